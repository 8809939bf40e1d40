"""What one training image contributes to an epoch, built once and kept on disk.

Decoding a 2048 PNG and rasterising its JSON every epoch is most of the data cost. An `Entry` keeps only what
any jittered, rotated crop can reach: the grey image cut to the ground-truth region enlarged by the largest
jitter and rotation (`geometry.reach`), and each class mask cut to its own bounding box inside that cut,
packed 8 pixels to a byte. Files are keyed by the image and JSON paths, their mtimes and sizes, the region
rule and the reach, so a changed file or rule is a new key, never a stale hit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from convert.carpal_region import RegionConfig, carpal_region
from convert.classes import NUM_CLASSES
from convert.dataset import EDGE_TOLERANCE, Clip, Item, Sample, iter_samples, try_load_sample
from convert.images import to_gray_uint8
from convert.masks import class_masks
from convert.wrist_pose import is_bent
from plumbing.atomic import atomic_path
from plumbing.errors import DataError
from plumbing.parallel import bounded_map

from .geometry import Box, clip_box, crop_padded, scale_box

CACHE_VERSION = 2  # bump when the stored layout changes (2: the wrist pose)


@dataclass
class PackedMasks:
    """Class masks of one image, each cut to its own bounding box and packed 8 pixels to a byte: a class empty
    here has a zero box and no bytes."""

    class_boxes: np.ndarray      # (29, 4) int32 x0, y0, x1, y1 in image pixels
    bits: np.ndarray             # the masks inside their boxes, np.packbits, one after the other
    offsets: np.ndarray          # (30,) int64: class c's bytes are bits[offsets[c]:offsets[c + 1]]

    def crop(self, classes: Sequence[int], box: Box, packed: bool = False) -> np.ndarray:
        """(len(classes), h, w) uint8 {0,1} masks of box, zero outside the image.

        packed: (h, w, ceil(len(classes) / 8)) instead, 8 classes to a byte in np.packbits' bit order
        (np.unpackbits(..., axis=-1, count=len(classes)) restores (h, w, C)). Nearest-neighbour resizes, flips
        and rotations move whole bytes, so the geometry runs on 4 channels instead of 29.
        """
        x0, y0, x1, y1 = box
        n = len(classes)
        out = np.zeros((y1 - y0, x1 - x0, (n + 7) // 8) if packed else (n, y1 - y0, x1 - x0), np.uint8)
        for i, c in enumerate(classes):
            cx0, cy0, cx1, cy1 = (int(v) for v in self.class_boxes[c])
            window = _window((cx0, cy0, cx1, cy1), box)
            if window is None:
                continue
            size = (cy1 - cy0) * (cx1 - cx0)
            mask = np.unpackbits(self.bits[self.offsets[c]:self.offsets[c + 1]], count=size)
            inside = mask.reshape(cy1 - cy0, cx1 - cx0)[window[1]]
            if packed:
                out[..., i // 8][window[0]] |= inside << (7 - i % 8)
            else:
                out[i][window[0]] = inside
        return out


def pack_masks(masks: Sequence[np.ndarray | None], context: Box) -> PackedMasks:
    """29 full-image masks (None: empty) -> what of each lies inside the context box, packed."""
    cx0, cy0, cx1, cy1 = context
    boxes = np.zeros((NUM_CLASSES, 4), np.int32)
    chunks, offsets = [], [0]
    for c in range(NUM_CLASSES):
        inside = masks[c][cy0:cy1, cx0:cx1] if masks[c] is not None else np.zeros((0, 0), np.uint8)
        rows = np.flatnonzero(inside.any(axis=1))
        if rows.size:
            cols = np.flatnonzero(inside[rows[0]:rows[-1] + 1].any(axis=0))
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            boxes[c] = (cx0 + c0, cy0 + r0, cx0 + c1, cy0 + r1)
            chunks.append(np.packbits(inside[r0:r1, c0:c1].astype(bool)))
        offsets.append(offsets[-1] + (chunks[-1].size if rows.size else 0))
    bits = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return PackedMasks(boxes, bits, np.array(offsets, np.int64))


@dataclass
class Entry:
    hw: tuple[int, int]          # native image size
    region: Box                  # carpal region of the ground-truth masks (the un-jittered crop)
    origin: tuple[int, int]      # image (x, y) of image[0, 0]
    image: np.ndarray            # grey uint8 cut of the context box
    class_boxes: np.ndarray      # (29, 4) int32 x0, y0, x1, y1 in image pixels of each mask inside the context
    bits: np.ndarray             # the masks inside their boxes, np.packbits, one after the other
    offsets: np.ndarray          # (30,) int64: class c's bytes are bits[offsets[c]:offsets[c + 1]]
    bent: bool = False           # a bent wrist in the labels (convert.wrist_pose); read from the whole masks, not the cut

    @property
    def context(self) -> Box:
        """The image-pixel box this entry holds: everything a crop can reach."""
        x0, y0 = self.origin
        return (x0, y0, x0 + self.image.shape[1], y0 + self.image.shape[0])

    def crop_image(self, box: Box) -> np.ndarray:
        return crop_padded(self.image, box, self.origin)

    def crop_masks(self, classes: Sequence[int], box: Box, packed: bool = False) -> np.ndarray:
        """(len(classes), h, w) uint8 {0,1} masks of box, zero outside the image (PackedMasks.crop)."""
        return PackedMasks(self.class_boxes, self.bits, self.offsets).crop(classes, box, packed)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"hw": np.array(self.hw), "region": np.array(self.region), "origin": np.array(self.origin),
                "image": self.image, "class_boxes": self.class_boxes, "bits": self.bits, "offsets": self.offsets,
                "bent": np.array(self.bent)}

    @classmethod
    def from_arrays(cls, a) -> "Entry":
        return cls(tuple(int(v) for v in a["hw"]), tuple(int(v) for v in a["region"]),
                   tuple(int(v) for v in a["origin"]), a["image"], a["class_boxes"], a["bits"], a["offsets"],
                   bool(a["bent"]))


def _window(src: Box, box: Box) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where the image-pixel rectangle src overlaps box: (slices into a box-sized array, slices into a
    src-sized array), or None when they do not overlap."""
    x0, y0 = max(box[0], src[0]), max(box[1], src[1])
    x1, y1 = min(box[2], src[2]), min(box[3], src[3])
    if x0 >= x1 or y0 >= y1:
        return None
    return ((slice(y0 - box[1], y1 - box[1]), slice(x0 - box[0], x1 - box[0])),
            (slice(y0 - src[1], y1 - src[1]), slice(x0 - src[0], x1 - src[0])))


def make_entry(sample: Sample, region_cfg: RegionConfig, reach: float) -> Entry:
    """Rasterise at native size, find the region with THE region rule, keep what a crop can reach."""
    hw = sample.hw
    masks = class_masks(sample.polygons, hw)
    region = carpal_region(masks, region_cfg).box
    context = clip_box(scale_box(region, reach), hw)
    cx0, cy0, cx1, cy1 = context
    packed = pack_masks(masks, context)
    image = np.ascontiguousarray(to_gray_uint8(sample.image)[cy0:cy1, cx0:cx1])
    return Entry(hw, region, (cx0, cy0), image, packed.class_boxes, packed.bits, packed.offsets, is_bent(masks))


class EntryStore:
    """Entries of labelled images, from the disk cache when one is given, else built on every call."""

    def __init__(self, region_cfg: RegionConfig, reach: float, cache_dir: str | Path | None,
                 edge_tolerance: float = EDGE_TOLERANCE):
        self.region_cfg = region_cfg
        self.reach = float(reach)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.edge_tolerance = float(edge_tolerance)
        # the tolerance is part of the key: a file accepted under a wider one is checked again under a narrower one
        rule = {"region": dataclasses.asdict(region_cfg), "reach": round(self.reach, 6), "version": CACHE_VERSION}
        if self.edge_tolerance != EDGE_TOLERANCE:  # the default keeps the keys of caches built before it existed
            rule["edge_tolerance"] = self.edge_tolerance
        self._rule = json.dumps(rule, sort_keys=True)

    def path(self, item: Item) -> Path:
        stats = []
        for p in (item.image, item.label):
            st = Path(p).stat()
            stats.append(f"{Path(p).resolve()}|{st.st_mtime_ns}|{st.st_size}")
        key = hashlib.sha1("\n".join(stats + [self._rule]).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.npz"

    def _make(self, item: Item) -> tuple[Entry, list[Clip]]:
        sample, problems = try_load_sample(item, self.edge_tolerance)
        if problems:
            more = f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise DataError(problems[0].path, problems[0].reason + more)
        return make_entry(sample, self.region_cfg, self.reach), sample.clips

    def get(self, item: Item) -> Entry:
        return self._get(item)[0]

    def _get(self, item: Item) -> tuple[Entry, list[Clip]]:
        """The entry, and the polygons cut to the image when it was read now (none from the cache)."""
        if self.cache_dir is None:
            return self._make(item)
        path = self.path(item)
        if path.is_file():
            try:
                with np.load(path) as arrays:
                    return Entry.from_arrays(arrays), []
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # a damaged cache file is rebuilt, never trusted
        entry, clips = self._make(item)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **entry.arrays())
        return entry, clips

    def build(self, items: Iterable[Item], workers: int,
              progress: Callable[[int, int], None] | None = None) -> list[Clip]:
        """Fill the cache (threads: decoding and rasterising release the GIL). Without a cache every file is still
        read once: a bad image must stop the run here, named in one line, not inside a DataLoader worker process,
        which would turn it into a traceback. Returns the polygons cut to their image among the files read now
        (a cached file was counted when it was cached, under the same tolerance)."""
        if self.cache_dir is None:
            return [c for s in iter_samples(list(items), workers, edge_tolerance=self.edge_tolerance) for c in s.clips]
        clips = []
        todo = [item for item in items if not self.path(item).is_file()]
        for done, (_, item_clips) in enumerate(bounded_map(self._get, todo, workers), 1):
            clips.extend(item_clips)
            if progress:
                progress(done, len(todo))
        return clips
