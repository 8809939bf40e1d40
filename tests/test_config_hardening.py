"""A config is read without surprises: an alias bomb is refused before anything expands it (and messages never
render a huge value to shorten it), a repeated key is an error instead of silently the last value, and an absurd
epoch count is refused."""

import tracemalloc

import pytest
from click.testing import CliRunner

from cascade.cli import main
from configs.loader import _show
from plumbing.errors import DataError
from stage1_detect.config import load_stage1_config
from stage2_segment.config import load_stage2_config

# nine levels of nine aliases each: 9**9 eight-letter strings once expanded
BOMB = f"a: &a [{', '.join(['xxxxxxxx'] * 9)}]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def test_alias_bomb_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + "epochs: *i\n")  # 9**9 strings once expanded, about 4 GB as text
    assert len(path.read_bytes()) < 600
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"bomb\.yaml: its aliases expand to more than 100,000 values"):
            load_stage2_config(path)
        assert tracemalloc.get_traced_memory()[1] < 50 * 2**20  # never expanded
    finally:
        tracemalloc.stop()
    result = CliRunner().invoke(main, ["train-stage2", "--data", str(tmp_path), "--config", str(path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "bomb.yaml" in result.output


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("train_classes: &a [Lunate, *a]\n")
    with pytest.raises(DataError, match="loop.yaml: an alias refers to itself"):
        load_stage2_config(path)


def test_messages_never_render_a_huge_value():
    value = ["x" * 8] * 9
    for _ in range(7):
        value = [value] * 9  # 9**8 strings when rendered whole: 500 MB of text
    tracemalloc.start()
    try:
        shown = _show(value)
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
    assert len(shown) <= 60


def test_repeated_key_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("epochs: 3\nlr: 0.001\nepochs: 300\n")
    with pytest.raises(DataError, match=r"twice\.yaml: line 3: key 'epochs' repeats the one of line 1"):
        load_stage2_config(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("region:\n  margin: 0.1\n  margin: 0.2\n")
    with pytest.raises(DataError, match="line 3: key 'margin' repeats"):
        load_stage1_config(nested)
    merged = tmp_path / "merged.yaml"  # a YAML merge key overrides by design
    merged.write_text("base: &b {margin: 0.1}\n")
    with pytest.raises(DataError, match="unknown key"):  # no duplicate complaint, the usual unknown key one
        load_stage2_config(merged)


def test_absurd_epochs_are_refused(yolo_set):
    with pytest.raises(DataError, match="epochs: need epochs <= 100000"):
        load_stage2_config(None, ["epochs=1000000000"])
    result = CliRunner().invoke(main, ["train-stage1", "--data", str(yolo_set), "epochs=1000000000"])
    assert result.exit_code == 2 and "epochs 1000000000" in result.output, result.output
