"""The data contract: classes, dataset reading and validation, masks, folds, YOLO-seg export, RLE, submissions."""

from . import offline

offline.apply()  # before any submodule (or a later stage) imports ultralytics, albumentations or smp

from .classes import CARPAL_INDICES, CARPALS, CLASSES, NUM_CLASSES  # noqa: E402
from .errors import CascadeError, DataError, Problem  # noqa: E402

__all__ = ["CARPALS", "CARPAL_INDICES", "CLASSES", "NUM_CLASSES", "CascadeError", "DataError", "Problem"]
