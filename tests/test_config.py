from dataclasses import dataclass, field

import pytest

from configs import CONFIG_DIR, load_config
from plumbing.errors import CascadeError, DataError


@dataclass
class Inner:
    noise: float = 0.1
    size: tuple = (1, 2)


@dataclass
class Outer:
    epochs: int = 3
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\ninner:\n  noise: 1\n")
    cfg = load_config(Outer, path, ["name=abc", "inner.size=[3, 4]"])
    assert cfg == Outer(epochs=5, name="abc", inner=Inner(noise=1.0, size=(3, 4)))
    assert isinstance(cfg.inner.noise, float)


def test_unknown_keys_and_bad_overrides_are_named(tmp_path):
    with pytest.raises(DataError, match="unknown key.*epoch\\b"):
        load_config(Outer, None, ["epoch=1"])
    with pytest.raises(CascadeError, match="not key=value"):
        load_config(Outer, None, ["epochs"])
    with pytest.raises(DataError, match="config file not found"):
        load_config(Outer, tmp_path / "none.yaml")



def test_an_unknown_key_suggests_the_key_it_misspells(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epoch: 5\n")
    with pytest.raises(DataError) as err:
        load_config(Outer, path)
    assert str(err.value) == f"{path}: unknown key epoch (did you mean 'epochs'?) for Outer"
    with pytest.raises(DataError, match=r"unknown key inner\.nois \(did you mean 'inner\.noise'\?\) for Inner$"):
        load_config(Outer, None, ["inner.nois=1"])
    # a key like none of them: the section's keys are listed instead
    with pytest.raises(DataError, match=r"unknown keys epoch \(did you mean 'epochs'\?\), zzz for Outer "
                                        r"\(known: epochs, inner, name\)$"):
        load_config(Outer, None, ["epoch=1", "zzz=2"])

@dataclass
class Typed:
    count: int = 1
    rate: float = 0.5
    flag: bool = True
    label: str = "a"
    maybe: float | None = None
    names: list[str] = field(default_factory=list)
    sizes: tuple[int, ...] = (1,)
    pair: tuple[float, float] = (0.0, 1.0)
    weights: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def test_values_are_converted_to_the_field_types():
    cfg = load_config(Typed, None, ["rate=1e-3", "maybe=2", "names=[a, b]", "sizes=[3, 4, 5]", "pair=[1, 2]",
                                    "weights={x: 1}", "inner.noise=0"])
    assert cfg.rate == 0.001 and cfg.maybe == 2.0 and isinstance(cfg.maybe, float)
    assert cfg.names == ["a", "b"] and cfg.sizes == (3, 4, 5) and cfg.pair == (1.0, 2.0)
    assert cfg.weights == {"x": 1.0} and isinstance(cfg.weights["x"], float) and cfg.inner.noise == 0.0
    assert load_config(Typed, None, ["maybe=", "weights="]).weights == {}


@pytest.mark.parametrize("override, key", [
    ("count=abc", "count"), ("count=true", "count"), ("count=1.5", "count"), ("rate=abc", "rate"),
    ("rate=.nan", "rate"), ("flag=abc", "flag"), ("flag=1", "flag"), ("label=", "label"), ("label=[1]", "label"),
    ("maybe=abc", "maybe"), ("names=a", "names"), ("names=[a, 1]", "names[1]"), ("sizes=3", "sizes"),
    ("sizes=[1, x]", "sizes[1]"), ("pair=[1, 2, 3]", "pair"), ("pair=5", "pair"), ("weights=abc", "weights"),
    ("weights={x: abc}", "weights.x"), ("inner.noise=abc", "inner.noise"), ("inner=3", "inner"),
])
def test_a_value_of_the_wrong_type_is_named(tmp_path, override, key):
    path = tmp_path / "c.yaml"
    path.write_text("count: 2\n")
    with pytest.raises(DataError) as err:
        load_config(Typed, path, [override])
    assert err.value.path == str(path) and err.value.reason.startswith(f"{key}:"), err.value
    assert "\n" not in str(err.value)


def _stage1(overrides):
    from stage1_detect.config import load_stage1_config

    return load_stage1_config(None, overrides)


def _stage2(overrides):
    from stage2_segment.config import load_stage2_config

    return load_stage2_config(CONFIG_DIR / "stage2_cpu.yaml", overrides)


def _synth(overrides):
    from synthetic_hands import load_synth_config

    return load_synth_config(None, overrides)


def _demo(overrides):
    from cascade.demo import load_demo_config

    return load_demo_config(None, overrides)


BAD = {
    _stage2: [("epochs=abc", "epochs"), ("seed=abc", "seed"), ("amp=abc", "amp"),
              ("class_thresholds=abc", "class_thresholds"), ("train_classes=Pisiform", "train_classes"),
              ("class_thresholds={Pisiform: abc}", "class_thresholds.Pisiform"), ("name=", "name"), ("out=", "out"),
              ("out=''", "out"), ("jitter.scale=5", "jitter.scale"), ("lr=0", "lr"), ("lr=abc", "lr"),
              ("warmup_epochs=-1", "warmup_epochs"), ("weight_decay=-1e-4", "weight_decay"),
              ("min_lr_ratio=0", "min_lr_ratio"), ("min_lr_ratio=1.5", "min_lr_ratio"),
              ("augment.clahe_tiles=0", "augment.clahe_tiles"), ("augment.clahe_clip=0", "augment.clahe_clip"),
              ("normalize.std=0", "normalize.std"), ("decoder_channels=[16, 16, 16, 16]", "decoder_channels"),
              ("decoder_channels=[16, 16, 16, 16, 0]", "decoder_channels"), ("threshold=1", "threshold"),
              ("region.margin=-0.1", "region.margin"), ("region.min_side=1.5", "region.min_side"),
              ("region.min_carpals=0", "region.min_carpals"), ("region.min_carpals=9", "region.min_carpals"),
              ("region.square=3", "region.square"), ("region.prior.mean_box=[0.5, 0, 0.4, 1]", "region.prior.mean_box")],
    _stage1: [("conf=abc", "conf"), ("conf=1.5", "conf"), ("region.margin=-1", "region.margin")],
    _synth: [("pose.scale=5", "pose.scale"), ("pose.scale=[2, 1]", "pose.scale"), ("pose.scale=[1]", "pose.scale"),
             ("render.noise=[-0.1, 0.1]", "render.noise"), ("render.blur_px=[-1, 1]", "render.blur_px"),
             ("points.min_points=2", "points.min_points"), ("pose.max_tries=0", "pose.max_tries"),
             ("points.spacing_px=[0, 1]", "points.spacing_px"), ("pose.bent_wrist_prob=2", "pose.bent_wrist_prob")],
    _demo: [("patients=abc", "patients"), ("size=abc", "size"), ("folds=abc", "folds"), ("overlays=abc", "overlays"),
            ("stage1_overrides=epochs=1", "stage1_overrides"), ("stage2_overrides=[1]", "stage2_overrides[0]"),
            ("patients=0", "patients"), ("folds=1", "folds"), ("fold=4", "fold"), ("size=64", "size"),
            ("overlays=-1", "overlays")],
}


@pytest.mark.parametrize("load, override, key", [(load, o, k) for load, cases in BAD.items() for o, k in cases],
                         ids=lambda v: getattr(v, "__name__", v))
def test_bad_overrides_are_one_line_errors_naming_file_and_key(load, override, key):
    with pytest.raises(DataError) as err:
        load([override])
    assert err.value.path.endswith(".yaml") and err.value.reason.startswith(f"{key}:"), err.value
    assert "\n" not in str(err.value)


def test_config_files_that_are_not_yaml_mappings(tmp_path):
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(DataError, match="latin1.yaml: not UTF-8"):
        load_config(Outer, binary)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    for overrides in ([], ["epochs=2"]):
        with pytest.raises(DataError, match="list.yaml: expected a mapping"):
            load_config(Outer, listed, overrides)
    with pytest.raises(DataError, match="is a folder"):
        load_config(Outer, tmp_path)
    with pytest.raises(CascadeError, match="not valid YAML"):
        load_config(Outer, None, ["epochs=[1,"])
    empty = tmp_path / "empty.yaml"
    empty.write_text("inner:\n")
    assert load_config(Outer, empty, ["inner.noise=0.5"]) == Outer(inner=Inner(noise=0.5))


def test_demo_checks_its_stage_configs_before_any_work(tmp_path):
    from cascade.demo import load_demo_config, run_demo

    for override, words in (("stage2_overrides=[epochs=abc]", "epochs: 'abc' is not an integer"),
                            ("stage1_config=missing.yaml", "config file not found"),
                            ("stage1_overrides=[imgsz=abc]", "imgsz 'abc'"),
                            ("stage1_overrides=[device=foo]", "device 'foo'"),
                            ("stage2_overrides=[encoder=resnet999]", "not a segmentation-models-pytorch encoder")):
        with pytest.raises(CascadeError, match=words):
            run_demo(tmp_path / "demo", load_demo_config(None, [override, "device=cpu"]), echo=lambda _: None)
    assert not (tmp_path / "demo").exists()
    with pytest.raises(CascadeError, match="test_patients"):  # the demo predicts its test images
        load_demo_config(None, ["test_patients=0"])


def test_demo_replaces_only_a_folder_it_wrote(tmp_path):
    from cascade.demo import load_demo_config, run_demo

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "NOTES.txt").write_text("mine")
    with pytest.raises(CascadeError, match="not written by `cascade demo`"):
        run_demo(project, load_demo_config(None, ["device=cpu"]), echo=lambda _: None)
    assert (project / "data" / "NOTES.txt").read_text() == "mine" and len(list(project.rglob("*"))) == 2


@pytest.mark.parametrize("override, words", [
    ("train_classes=[Lunat, Scaphoid]", "train_classes: unknown class(es) Lunat (did you mean 'Lunate'?)"),
    ("prior.classes=[Capitat]", "prior.classes: unknown class(es) Capitat (did you mean 'Capitate'?)"),
])
def test_a_misspelt_class_name_suggests_the_class(override, words):
    from stage2_segment.config import load_stage2_config

    with pytest.raises(DataError) as err:
        load_stage2_config(CONFIG_DIR / "stage2_cpu.yaml", [override])
    assert str(err.value).endswith(words)
