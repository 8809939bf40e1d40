"""Stage 1: an ultralytics YOLO segmentation model on the whole hand; full-hand masks and the carpal region."""

import convert  # noqa: F401  (offline-safe environment before ultralytics is imported)
