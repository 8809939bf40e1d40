import pytest

from convert.folds import load_folds, make_folds, save_folds
from plumbing.errors import DataError


def test_every_patient_in_exactly_one_fold_and_folds_balanced():
    patients = [f"ID{i:03d}" for i in range(1, 23)]
    folds = make_folds(patients, k=5, seed=0)
    assert set(folds) == set(patients)
    sizes = [list(folds.values()).count(f) for f in range(5)]
    assert max(sizes) - min(sizes) <= 1


def test_split_depends_on_the_patient_set_not_on_order_or_duplicates():
    patients = [f"ID{i:03d}" for i in range(1, 11)]
    a = make_folds(patients, k=3, seed=7)
    # Both hands of a patient appear as two items: duplicates and order must not change anything.
    b = make_folds(list(reversed(patients)) + patients, k=3, seed=7)
    assert a == b
    assert make_folds(patients, k=3, seed=8) != a


def test_round_trip_through_the_file(tmp_path):
    folds = make_folds(["A", "B", "C", "D"], k=2, seed=1)
    save_folds(tmp_path / "folds.json", folds, k=2, seed=1)
    assert load_folds(tmp_path / "folds.json") == (folds, 2)


def test_too_few_patients_is_a_clear_error():
    with pytest.raises(DataError, match="2 patients cannot fill 5 folds"):
        make_folds(["A", "B"], k=5)


def test_bad_folds_file(tmp_path):
    (tmp_path / "f.json").write_text("{}")
    with pytest.raises(DataError, match="not a folds file"):
        load_folds(tmp_path / "f.json")
    with pytest.raises(DataError, match="not found"):
        load_folds(tmp_path / "missing.json")


@pytest.mark.parametrize("doc,why", [
    ('{"k": 2, "seed": 0, "patients": {"A": 0, "B": 7}}', "patient 'B' is in fold 7, expected a fold in 0..1 (k=2)"),
    ('{"k": 2, "patients": {"A": -1}}', "patient 'A' is in fold -1, expected a fold in 0..1"),
    ('{"k": 2, "patients": {"A": true}}', "patient 'A' is in fold true"),
    ('{"k": 2, "patients": {"A": "1"}}', "patient 'A' is in fold \"1\""),
    ('{"k": 2, "patients": {"A": 1.5}}', "patient 'A' is in fold 1.5"),
    ('{"k": 1, "patients": {"A": 0}}', "'k' is 1, expected a whole number of folds, at least 2"),
    ('{"k": "3", "patients": {"A": 0}}', "'k' is \"3\""),
    ('{"k": 2, "patients": ["A", "B"]}', "not a folds file"),
    ('[1, 2]', "not a folds file"),
    ("[" * 100_000, "not a folds file"),
])
def test_folds_file_with_impossible_contents(tmp_path, doc, why):
    path = tmp_path / "f.json"
    path.write_text(doc)
    with pytest.raises(DataError) as info:
        load_folds(path)
    assert str(info.value).startswith(f"{path}: ") and why in str(info.value)


def test_folds_path_that_is_a_folder(tmp_path):
    with pytest.raises(DataError, match="is a folder, not a folds file$"):
        load_folds(tmp_path)


def test_cli_evaluate_with_a_folder_as_folds_is_one_line(tmp_path):
    from click.testing import CliRunner

    from cascade.cli import main

    (tmp_path / "s.csv").write_text("image_name,class,rle\n")
    result = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path), "--folds-file", str(tmp_path),
                                       "--submission", str(tmp_path / "s.csv"), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2 and result.output == f"error: {tmp_path}: is a folder, not a folds file\n"
