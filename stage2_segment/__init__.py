"""Stage 2: a UNet that looks again at the carpal region, at (close to) native resolution, for all bones in it."""

import plumbing  # noqa: F401  (the offline environment before albumentations or smp is imported)
