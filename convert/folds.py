"""Patient-grouped K-fold split: both hands of a patient always fall in the same fold.

The split is recorded in a JSON file so that every later stage trains and validates on the same patients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from .atomic import write_text
from .errors import DataError

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
    """(patient -> fold, k) from a file written by save_folds."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        return {str(p): int(f) for p, f in doc["patients"].items()}, int(doc["k"])
    except FileNotFoundError:
        raise DataError(path, "folds file not found (it is written by `cascade convert`)") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DataError(path, "not a folds file (expected JSON with 'k' and 'patients')") from None
