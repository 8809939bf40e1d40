"""Stage 1: an ultralytics YOLO segmentation model on the whole hand; full-hand masks and the carpal region."""

import plumbing  # noqa: F401  (the offline environment before ultralytics is imported)
