"""Training priors from a submission of the training images (`prior.file`): a base model's out-of-fold
predictions, the errors stage 2 will meet at test time, rather than errors made up from the ground truth.

The file is checked like `cascade predict --base`: a valid submission, every training and validation image in
it, every mask inside its image. Only the prior classes are decoded, and of each only what a crop can reach
(the crop cache's context box), packed as the cache packs labels: a few tens of kB an image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from convert.classes import NUM_CLASSES
from convert.dataset import Item
from convert.submission_rows import SubmissionRows
from plumbing.parallel import bounded_map

from .cache import EntryStore, PackedMasks, pack_masks
from .geometry import Box


class FilePriors:
    def __init__(self, path: str | Path, classes: Sequence[int], items: Sequence[Item]):
        """Reads and checks the file's format and that it names every image of items (nothing decoded yet)."""
        self.path, self.classes = Path(path), list(classes)
        self.submission: SubmissionRows | None = SubmissionRows(self.path)
        self.submission.check_names([it.name for it in items], "the training and validation images")
        self._packed: dict[str, PackedMasks] = {}

    def load(self, items: Sequence[Item], store: EntryStore, workers: int) -> None:
        """Each image's masks checked against its size, and the prior classes kept where crops reach."""
        for name, packed in bounded_map(lambda it: (it.name, self._pack(it, store)), list(items), workers):
            self._packed[name] = packed
        self.submission = None  # its text rows (tens of MB for a real set) need not follow into every loader worker

    def _pack(self, item: Item, store: EntryStore) -> PackedMasks:
        entry = store.get(item)
        self.submission.check_image(item.name, entry.hw)
        masks: list[np.ndarray | None] = [None] * NUM_CLASSES
        for c, mask in zip(self.classes, self.submission.masks(item.name, entry.hw, self.classes)):
            masks[c] = mask
        return pack_masks(masks, entry.context)

    def crop(self, name: str, box: Box) -> np.ndarray:
        """(P, h, w) uint8 of box: the file's masks of the prior classes, zero outside the image."""
        return self._packed[name].crop(self.classes, box)
