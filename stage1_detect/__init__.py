"""Stage 1: an ultralytics YOLO segmentation model on the whole hand; full-hand masks and the carpal region.

    config     our keys typed, the rest passed to ultralytics    train      `cascade train-stage1`
    predict    image -> 29 masks at native size, region           box_masks  instance masks computed in their boxes
    weights    our settings saved inside the .pt                  threads    keep the caller's torch thread count
    region     the detected carpal region, else the rule's chain  safe_load  a .pt checked before ultralytics reads it
    ultralytics_offline  no font or AMP-check download while training

Never imports stage2_segment or cascade.
"""

import plumbing  # noqa: F401  (the offline environment before ultralytics is imported)
