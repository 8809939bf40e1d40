"""Stage 1 inference: any image -> 29 multi-label masks at the image's own size, confidences, carpal region.

A model trained on a set with the region class (class 29) detects the carpal region itself; that class never
becomes a mask or a score (stage1_detect.region picks the region)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from configs import build
from convert.carpal_region import Region, RegionConfig
from convert.classes import NUM_CLASSES, REGION_CLASS, REGION_CLASS_ID
from convert.yolo import REGION_KEY
from convert.images import to_gray_uint8
from plumbing.devices import check_available
from plumbing.errors import CascadeError

from .box_masks import BoxMasks
from .config import Stage1Config
from .region import Detection, pick_region
from .safe_load import check_stage1_file
from .threads import threads_kept
from .weights import META_KEY


@dataclass
class Stage1Output:
    masks: np.ndarray   # (29, H, W) uint8 {0,1}; overlaps kept; a class not found is all zero
    scores: np.ndarray  # (29,) float32 confidence of the instance kept per class, 0 when not found
    region: Region      # the carpal region and which rule produced it
    boxes: np.ndarray | None = None  # (29, 4) x0, y0, x1, y1 holding each class's pixels; None: not known
    detection: Detection | None = None  # the most confident carpal-region detection, whatever its confidence


def rank_in_class(pred: torch.Tensor) -> torch.Tensor:
    """For each row of an NMS output (x1, y1, x2, y2, conf, cls, mask coefficients...), how many rows of the same
    class are more confident (0 = the class's best; ties keep their order)."""
    order = torch.argsort(pred[:, 4], descending=True, stable=True).cpu().numpy()
    rank = np.zeros(len(order), np.int64)
    seen: dict[int, int] = {}
    for i, c in zip(order.tolist(), pred[order, 5].long().cpu().tolist()):
        rank[i] = seen.get(c, 0)
        seen[c] = rank[i] + 1
    return torch.as_tensor(rank, device=pred.device)


def _top_instance_predictor(max_rounds: int = 3):
    """ultralytics' segmentation predictor, building native-size masks only for each class's best instance, and
    only inside its box (`BoxMasks`).

    With up to 300 detections kept at a low confidence floor, the full-image masks of every instance were most of
    stage 1's time and memory. ultralytics drops an instance whose mask comes out empty; the next instance of that
    class then wins, so such classes get another round with their runner-up (rarely needed).
    Results carry `box_masks` [(y0, x0, bool mask inside the box)] beside `boxes`, and no full-size `masks`;
    the carpal-region class (its box only: no mask is built for it) is taken out of `boxes` into `region_detection`.
    """
    from ultralytics.engine.results import Results
    from ultralytics.models.yolo.segment import SegmentationPredictor
    from ultralytics.utils import ops

    class TopInstancePredictor(SegmentationPredictor):
        resample = BoxMasks()

        def construct_result(self, pred, img, orig_img, img_path, proto):
            is_region = pred[:, 5] >= REGION_CLASS_ID
            detection = None
            if is_region.any():
                rows = pred[is_region]
                best = rows[int(torch.argmax(rows[:, 4]))]
                box = ops.scale_boxes(img.shape[2:], best[None, :4].clone(), orig_img.shape)[0]
                detection = Detection(tuple(float(v) for v in box.tolist()), float(best[4]))
                pred = pred[~is_region]
            result = self._bones(pred, img, orig_img, img_path, proto)
            result.region_detection = detection
            return result

        def _bones(self, pred, img, orig_img, img_path, proto):
            if not len(pred):
                return super().construct_result(pred, img, orig_img, img_path, proto)
            boxes = ops.scale_boxes(img.shape[2:], pred[:, :4].clone(), orig_img.shape)
            rank, done, rows, crops = rank_in_class(pred), set(), [], []
            for r in range(max_rounds):
                pick = torch.nonzero((rank == r) & ~_isin(pred[:, 5], done)).flatten()
                if len(pick) == 0:
                    break
                masks = self.resample(proto, pred[pick, 6:], boxes[pick], orig_img.shape[:2])
                if masks is None:  # geometry not ultralytics': its own path, every instance at full size
                    return super().construct_result(pred, img, orig_img, img_path, proto)
                for i, (y0, x0, m) in zip(pick.tolist(), masks):
                    if m.any():
                        rows.append(torch.cat([boxes[i], pred[i, 4:6]]))
                        crops.append((y0, x0, m.cpu().numpy()))
                        done.add(int(pred[i, 5]))
            result = Results(orig_img, path=img_path, names=self.model.names,
                             boxes=torch.stack(rows) if rows else pred[:0, :6])
            result.box_masks = crops
            return result

    return TopInstancePredictor


def _isin(values: torch.Tensor, chosen: set) -> torch.Tensor:
    return torch.isin(values.long(), torch.tensor(sorted(chosen), dtype=torch.long, device=values.device))


class Stage1Model:
    """Loaded once, then `predict` on batches of decoded images (grey or colour, 8 or 16 bit, any size)."""

    def __init__(self, weights: str | Path, device: str | None = None, conf: float | None = None,
                 imgsz: int | None = None, half: bool | None = None, top_instance_only: bool = True):
        from ultralytics import YOLO

        weights = Path(weights)
        if not weights.is_file():
            raise CascadeError(f"{weights}: " + ("is a folder; expected the stage 1 weights file (.pt)"
                                                 if weights.is_dir() else "stage 1 weights not found"))
        if weights.suffix != ".pt":
            raise CascadeError(f"{weights}: expected the .pt weights written by `cascade train-stage1`")
        check_stage1_file(weights)  # before ultralytics unpickles it with weights_only=False
        try:
            self.model = YOLO(str(weights), task="segment")
            names = self.model.names
        except Exception as exc:  # ultralytics raises many types for a file that is not its checkpoint
            raise CascadeError(f"{weights}: not a YOLO segmentation checkpoint ({type(exc).__name__})") from None
        if self.model.task != "segment":  # a box detector loads as a segmenter and finds no masks at all
            raise CascadeError(f"{weights}: a {self.model.task} model; stage 1 needs a segmentation (-seg) model")
        # 29 bones, or (since issue 23) the bones and the carpal region; older models find the region by the rule
        self.detects_region = len(names) == NUM_CLASSES + 1 and names.get(REGION_CLASS_ID) == REGION_CLASS
        if len(names) != NUM_CLASSES and not self.detects_region:
            raise CascadeError(f"{weights}: model has {len(names)} classes, expected {NUM_CLASSES} "
                               f"(or {NUM_CLASSES + 1} with {REGION_CLASS} last)")
        meta = (self.model.ckpt or {}).get(META_KEY, {})
        self.region_cfg = build(RegionConfig, meta.get("region", {}), f"{weights}:region")
        self.region_conf = float(meta.get("region_conf", Stage1Config.region_conf))
        self.region_grow = float(meta.get("region_grow", Stage1Config.region_grow))
        # the margin the detector's training boxes held; its detections are rescaled to region_cfg's margin
        self.region_box_margin = (meta.get(REGION_KEY) or {}).get("margin")
        self.conf = conf if conf is not None else float(meta.get("conf", 0.01))
        self.imgsz = imgsz or int(self.model.overrides.get("imgsz", 640))
        self.device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        try:
            kind = torch.device(self.device).type
        except RuntimeError:
            raise CascadeError(f"device {self.device!r}: expected cpu, cuda or cuda:N") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise CascadeError(f"device {self.device!r}: no CUDA GPU here (use --device cpu)")
        check_available(torch.device(self.device), self.device)
        self.predictor = _top_instance_predictor() if top_instance_only else None
        half = torch.device(self.device).type == "cuda" if half is None else half
        from ultralytics.cfg import DEFAULT_CFG_DICT

        # newer ultralytics replaced `half` by `quantize`; support both
        self._precision = ({"quantize": 16 if half else None} if "quantize" in DEFAULT_CFG_DICT else {"half": half})

    def predict(self, images: Sequence[np.ndarray]) -> list[Stage1Output]:
        if not images:
            return []
        bgr = [cv2.cvtColor(to_gray_uint8(im), cv2.COLOR_GRAY2BGR) for im in images]
        with threads_kept():  # stage 2 and the paste run on the CPU after this, with every core
            results = self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, device=self.device,
                                         retina_masks=True, max_det=300, verbose=False, predictor=self.predictor,
                                         **self._precision)
        return [self._semantic(r, im.shape[:2]) for r, im in zip(results, images)]

    def _semantic(self, result, hw: tuple[int, int]) -> Stage1Output:
        """Instances -> one mask per class: the highest-confidence instance (each bone occurs once per hand); the
        carpal region from the most confident region detection, or the rule's chain."""
        detection = getattr(result, "region_detection", None)
        masks = np.zeros((NUM_CLASSES, *hw), np.uint8)
        scores = np.zeros(NUM_CLASSES, np.float32)
        crops = getattr(result, "box_masks", None)
        boxes = np.zeros((NUM_CLASSES, 4), np.int64)  # each class's pixels lie inside: the submission reads only these
        if crops is not None:  # TopInstancePredictor: already one instance per class, masks inside their boxes
            for (conf, cls), (y0, x0, m) in zip(result.boxes.data[:, 4:6].tolist(), crops):
                masks[int(cls), y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m
                boxes[int(cls)] = (x0, y0, x0 + m.shape[1], y0 + m.shape[0])
                scores[int(cls)] = conf
        elif result.masks is not None and len(result.boxes):
            boxes = None  # full-size masks of ultralytics' own path: the encoder scans them
            cls = result.boxes.cls.long()
            conf = result.boxes.conf.float()
            is_region = cls >= REGION_CLASS_ID
            if bool(is_region.any()):  # the region class in ultralytics' own path: its box only
                i = int(torch.argmax(torch.where(is_region, conf, torch.full_like(conf, -1.0))))
                detection = Detection(tuple(float(v) for v in result.boxes.xyxy[i].tolist()), float(conf[i]))
            bones = torch.where(is_region, torch.full_like(conf, -1.0), conf)  # -1: never a class's best
            best = torch.full((NUM_CLASSES + 1,), -1.0, device=conf.device).scatter_reduce(0, cls, bones, "amax")
            best = best[:NUM_CLASSES]
            found = torch.nonzero(best >= 0).flatten()
            if len(found):  # none when the region was all it found
                # index of the best instance of each found class (ties go to the first)
                pick = torch.stack([torch.nonzero((cls == c) & (conf == best[c]))[0, 0] for c in found])
                data = result.masks.data[pick]  # only the kept instances leave the device
                if data.shape[-2:] != hw:  # ultralytics returns native size with retina_masks; guard anyway
                    data = torch.nn.functional.interpolate(data[None].float(), size=hw, mode="nearest")[0]
                masks[found.cpu().numpy()] = data.to(torch.uint8).cpu().numpy()
                scores[found.cpu().numpy()] = best[found].cpu().numpy()
        region = pick_region(masks, detection, self.region_cfg, self.region_conf, self.region_box_margin,
                             self.region_grow)
        return Stage1Output(masks, scores, region, boxes, detection)
