"""The data contract every stage shares: what the dataset is, how it is read and checked, and what is handed in.

    classes        the 29 classes, their order, the carpals       dataset   reading and validating a labelled folder
    images         listing and reading PNG / JPEG radiographs     check     everything wrong with a folder, up front
    masks          polygons -> per-class masks (overlaps kept)    folds     patient-grouped folds
    yolo           the YOLO-seg export (`cascade convert`)        rle       run-length encoding of the submission
    submission     reading, checking and merging submission CSVs
    carpal_region  THE rule from masks to the box stage 2 looks at
    wrist_pose     straight or bent wrist, read from the labels   dice      the competition's metric
"""

import plumbing  # noqa: F401  (the offline environment before a stage imports ultralytics, albumentations or smp)

from .classes import CARPAL_INDICES, CARPALS, CLASSES, NUM_CLASSES  # noqa: E402

__all__ = ["CARPALS", "CARPAL_INDICES", "CLASSES", "NUM_CLASSES"]
