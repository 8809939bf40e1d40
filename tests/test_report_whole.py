"""evaluate's report folder appears whole or not at all: a rerun that fails midway leaves the previous report as
it was (not a new dice.csv and paste.json beside the old dice.png), and a folder holding other files is refused
before any scoring."""

import numpy as np
import pytest
from click.testing import CliRunner

from cascade import report
from cascade.cli import main
from cascade.evaluate import Evaluation
from cascade.paste import PastePlan
from cascade.scores import Scores
from plumbing.errors import DataError


def _scores(value):
    scores = Scores()
    truth = np.zeros((29, 8, 8), np.uint8)
    truth[:, 2:6, 2:6] = 1
    pred = truth.copy()
    pred[:, 2:6, 2:2 + value] = 0
    scores.add("a.png", truth, {"stage1": pred, "cascade": truth}, patient="P1")
    return scores


def test_failed_rerun_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    out = tmp_path / "report"
    Evaluation(_scores(1), None, 0.58).save(out)  # no plan: no paste.json
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "paste.json" not in before

    def broken_chart(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "_chart", broken_chart)  # fails after paste.json, the csv files and the table
    with pytest.raises(DataError, match="report: cannot write"):
        Evaluation(_scores(2), PastePlan((20,), {20: 0.5}), 0.58).save(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no partial folder left


def test_folder_with_other_files_is_refused_before_scoring(tmp_path, synth_root):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["evaluate", "--data", str(synth_root / "train"), "--submission",
                                       str(tmp_path / "absent.csv"), "--out", str(out)])
    assert result.exit_code == 2 and "holds notes.txt, which no report wrote" in result.output, result.output
    assert (out / "notes.txt").read_text() == "mine"
