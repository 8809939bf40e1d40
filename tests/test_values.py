"""One way to check a config value's range, one way to shorten a value for a message."""

import pytest

from configs import CONFIG_DIR
from plumbing.errors import DataError
from plumbing.values import check_pair, check_range, did_you_mean, shorten


@pytest.mark.parametrize("bounds, value, need", [
    (dict(lo=0), -1, "x >= 0"),
    (dict(lo=0, lo_open=True), 0, "x > 0"),
    (dict(hi=0.5, hi_open=True), 0.5, "x < 0.5"),
    (dict(lo=0, hi=1), 1.5, "0 <= x <= 1"),
    (dict(lo=0, hi=1, lo_open=True, hi_open=True), 0, "0 < x < 1"),
    (dict(lo=0, hi=1), float("nan"), "0 <= x <= 1"),
])
def test_a_value_out_of_range_names_the_key_the_bounds_and_the_value(bounds, value, need):
    with pytest.raises(ValueError) as err:
        check_range("x", value, **bounds)
    assert str(err.value) == f"x: need {need}, got {value}"


@pytest.mark.parametrize("bounds, value", [(dict(lo=0), 0), (dict(lo=0, hi=1), 1), (dict(hi=0.5, hi_open=True), 0.4)])
def test_a_value_on_a_closed_bound_passes(bounds, value):
    check_range("x", value, **bounds)


def test_the_reason_follows_the_bounds():
    with pytest.raises(ValueError, match=r"^folds: need 2 <= folds <= 3 \(patients\), got 4$"):
        check_range("folds", 4, 2, 3, why="patients")


def test_a_pair_needs_lo_before_hi():
    check_pair("scale", (1.0, 1.0))
    with pytest.raises(ValueError, match=r"^scale: need \[lo, hi\] with lo <= hi, got \[1.2, 0.9\]$"):
        check_pair("scale", (1.2, 0.9))


def test_shorten_keeps_short_text_and_cuts_long_text_to_the_limit():
    assert shorten("abc", 5) == "abc"
    assert shorten("abcdef", 5) == "ab..."
    assert len(shorten("x" * 500)) == 60


@pytest.mark.parametrize("loader, override, message", [
    ("stage2", "augment.rotate=50", "augment.rotate: need 0 <= rotate <= 45 (degrees), got 50.0"),
    ("stage2", "jitter.shift=0.5", "jitter.shift: need 0 <= shift < 0.5, got 0.5"),
    ("stage2", "epochs=0", "epochs: need epochs >= 1, got 0"),
    ("stage2", "region.min_carpals=9", "region.min_carpals: need 1 <= min_carpals <= 8, got 9"),
    ("stage1", "conf=2", "conf: need 0 <= conf <= 1, got 2.0"),
    ("synth", "pose.margin_frac=0.5", "pose.margin_frac: need 0 <= margin_frac < 0.5 (a margin on each side)"),
    ("demo", "fold=4", "fold: need 0 <= fold < 4 (folds), got 4"),
])
def test_every_config_reports_a_range_the_same_way_naming_file_and_dotted_key(loader, override, message):
    from cascade.demo import load_demo_config
    from stage1_detect.config import load_stage1_config
    from stage2_segment.config import load_stage2_config
    from synthetic_hands import load_synth_config

    load = {"stage2": load_stage2_config, "stage1": load_stage1_config, "synth": load_synth_config,
            "demo": load_demo_config}[loader]
    with pytest.raises(DataError) as err:
        load(None, [override])
    assert str(CONFIG_DIR) in err.value.path
    assert err.value.reason.startswith(message)


def test_a_misspelt_key_is_matched_to_the_one_it_resembles_and_only_then():
    assert did_you_mean("epoch", ["lr", "epochs", "seed"]) == " (did you mean 'epochs'?)"
    assert did_you_mean("flipp", ["hflip", "rotate"], prefix="augment.") == " (did you mean 'augment.hflip'?)"
    assert did_you_mean("nonsense", ["lr", "epochs", "seed"]) == ""
