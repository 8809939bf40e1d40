"""The cascade: CLI and end-to-end pipeline over `convert`, `stage1_detect` and `stage2_segment`."""

import convert  # noqa: F401  (applies the offline-safe environment before anything else is imported)
