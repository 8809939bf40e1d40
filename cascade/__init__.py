"""The cascade: CLI and end-to-end pipeline over `convert`, `stage1_detect` and `stage2_segment`."""

import plumbing  # noqa: F401  (the offline environment before anything else is imported)
