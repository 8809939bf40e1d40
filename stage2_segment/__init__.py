"""Stage 2: a UNet that looks again at the carpal region, at (close to) native resolution, for all bones in it."""

import convert  # noqa: F401  (offline-safe environment before albumentations or smp is imported)
