"""Patient-grouped K-fold split: both hands of a patient always fall in the same fold.

The split is recorded in a JSON file so that every later stage trains and validates on the same patients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from plumbing.atomic import write_text
from plumbing.errors import DataError

FOLDS_FILE = "folds.json"


def make_folds(patients: Iterable[str], k: int = 5, seed: int = 0) -> dict[str, int]:
    """patient -> fold in [0, k). Depends only on the set of patients, k and seed (not on file order)."""
    ids = sorted(set(patients))
    if k < 2:
        raise DataError("--folds", f"need at least 2 folds, got {k}")
    if len(ids) < k:
        raise DataError("--folds", f"{len(ids)} patients cannot fill {k} folds")
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[j]: int(rank % k) for rank, j in enumerate(order)}


def save_folds(path: str | Path, folds: dict[str, int], k: int, seed: int) -> None:
    write_text(path, json.dumps({"k": k, "seed": seed, "patients": dict(sorted(folds.items()))}, indent=1) + "\n")


def load_folds(path: str | Path) -> tuple[dict[str, int], int]:
    """(patient -> fold, k) from a file written by save_folds; every fold must lie in [0, k)."""
    path = Path(path)
    not_folds = "not a folds file (expected JSON with 'k' and 'patients')"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "folds file not found (it is written by `cascade convert`)") from None
    except OSError as exc:
        if isinstance(exc, IsADirectoryError) or path.is_dir():
            raise DataError(path, "is a folder, not a folds file") from None
        raise DataError(path, f"cannot read the folds file ({exc.strerror or type(exc).__name__})") from None
    except (ValueError, RecursionError):  # bad JSON or not UTF-8
        raise DataError(path, not_folds) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("patients"), dict) or "k" not in doc:
        raise DataError(path, not_folds)
    k, patients = doc["k"], doc["patients"]
    # exact int checks: int() would also take "3", 2.7 and true
    if type(k) is not int or k < 2:
        raise DataError(path, f"'k' is {json.dumps(k)[:20]}, expected a whole number of folds, at least 2")
    for patient, fold in patients.items():
        if type(fold) is not int or not 0 <= fold < k:
            raise DataError(path, f"patient {patient!r} is in fold {json.dumps(fold)[:20]}, "
                                  f"expected a fold in 0..{k - 1} (k={k})")
    return dict(patients), k
