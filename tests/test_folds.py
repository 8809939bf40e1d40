import pytest

from convert.errors import DataError
from convert.folds import load_folds, make_folds, save_folds


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
