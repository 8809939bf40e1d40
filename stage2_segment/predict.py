"""Stage 2 inference: images and their carpal regions -> per-class probabilities on each region's native pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from configs import build
from convert.carpal_region import Region, RegionConfig
from convert.classes import CLASS_INDEX
from convert.images import to_gray_uint8
from plumbing.errors import CascadeError

from .checkpoint import OPTIONAL, load_checkpoint, load_weights
from .distributed import pick_device
from .geometry import box_hw, crop_padded, resize_image, resize_masks, to_native
from .model import Preprocess, build_unet
from .precision import Precision
from .prior import cut_prior, gated


def _forward(net: torch.nn.Module, x: torch.Tensor, amp: bool, amp_dtype: torch.dtype) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp):
        return torch.sigmoid(net(x).float())


@torch.no_grad()
def predict_crops(net: torch.nn.Module, crops: Sequence[np.ndarray], input_size: int, preprocess: Preprocess,
                  device: torch.device, tta_hflip: bool = False, batch: int = 8, amp: bool = False,
                  channels_last: bool = False, channels: Sequence[int] | None = None,
                  priors: Sequence[np.ndarray] | None = None, amp_dtype: torch.dtype = torch.float16,
                  on_device: bool = False) -> list[np.ndarray]:
    """Grey uint8 crops of any size -> (C, h, w) float32 probabilities at each crop's own size; with `channels`
    only those output channels, chosen on the device (a real ~900 px carpal region's 29 channels at native size
    are 94 MB of float32 to copy to the host, and the cascade pastes 8). `priors`: for a prior model, each
    crop's (P, h, w) {0,1} full-hand masks on the crop's pixels (prior.cut_prior), resized as training did.
    on_device: torch tensors left on the device instead (validation scores them there and copies only the sums).

    Used by Stage2Model and by training's validation, so validation scores exactly what inference produces.
    """
    pick = None if channels is None else torch.as_tensor(list(channels), dtype=torch.long, device=device)
    out: list[np.ndarray] = []
    for start in range(0, len(crops), batch):
        chunk = crops[start:start + batch]
        inputs = [preprocess(resize_image(c, input_size)) for c in chunk]
        if priors is not None:
            inputs = [np.concatenate([x, prior_input(p, input_size)]) for x, p in
                      zip(inputs, priors[start:start + batch])]
        x = torch.from_numpy(np.stack(inputs)).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        probs = _forward(net, x, amp, amp_dtype)
        if tta_hflip:  # flip the input, un-flip the output, average
            probs = (probs + _forward(net, x.flip(-1), amp, amp_dtype).flip(-1)) / 2
        if pick is not None:
            probs = probs.index_select(1, pick)
        out.extend(to_native(p, c.shape[:2]) if on_device else to_native(p, c.shape[:2]).cpu().numpy()
                   for p, c in zip(probs, chunk))
    return out


def prior_input(prior: np.ndarray, size: int) -> np.ndarray:
    """(P, h, w) {0,1} -> (P, size, size) float32, resized nearest as training's labels and priors are."""
    return resize_masks(np.ascontiguousarray(prior.transpose(1, 2, 0)), size).transpose(2, 0, 1).astype(np.float32)


class Stage2Model:
    """Loaded once from a stage 2 checkpoint, then `predict` on batches of images with their regions."""

    def __init__(self, checkpoint: str | Path, device: str | None = None):
        ckpt = load_checkpoint(checkpoint)
        self.path = Path(checkpoint)
        self.train_classes = [CLASS_INDEX[n] for n in ckpt["train_classes"]]  # channel i is CLASSES[train_classes[i]]
        self.paste_classes = [CLASS_INDEX[n] for n in ckpt["paste_classes"]]
        self.largest_component = bool(ckpt.get("paste_largest_component", True))  # older checkpoints: the default
        self.thresholds = np.asarray(ckpt["thresholds"], np.float32)
        self.input_size = int(ckpt["input_size"])
        self.tta_hflip = bool(ckpt.get("tta_hflip", False))  # what validation used; predict() still decides
        try:
            self.region_cfg = build(RegionConfig, ckpt["region"], f"{checkpoint}:region")
            self.preprocess = Preprocess(**ckpt["preprocess"])
        except (CascadeError, TypeError) as exc:
            raise CascadeError(f"{checkpoint}: unreadable region or preprocess settings ({exc})") from None
        # the full-hand classes it sees beside the grey crop; checkpoints made before priors see none
        self.prior_classes = [CLASS_INDEX[n] for n in ckpt.get("prior_classes", OPTIONAL["prior_classes"])]
        self.prior_min_carpals = int(ckpt.get("prior_min_carpals", OPTIONAL["prior_min_carpals"]))
        self.device = pick_device(device, 0)
        self.net = build_unet(ckpt["encoder"], len(self.train_classes), ckpt["decoder_channels"],
                              prior_channels=len(self.prior_classes))
        load_weights(self.net, ckpt, checkpoint)
        self.net.to(self.device).eval()
        trained = Precision.from_checkpoint(ckpt)
        on_gpu = self.device.type == "cuda"
        # as the network was trained and validated: its autocast dtype only if it ran in AMP, NHWC if it ran so
        self.amp, self.amp_dtype = on_gpu and trained.dtype is not None, trained.dtype or torch.float16
        self.channels_last = on_gpu and trained.channels_last
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if on_gpu:
            torch.backends.cudnn.benchmark = True  # one input size for every crop: the fastest kernels pay

    @property
    def needs_prior(self) -> bool:
        return bool(self.prior_classes)

    def predict(self, images: Sequence[np.ndarray], regions: Sequence[Region], tta_hflip: bool = False,
                batch: int = 8, channels: Sequence[int] | None = None,
                full: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """One (len(train_classes), y1 - y0, x1 - x0) float32 probability array per image, covering its
        region.box on the image's native pixels (zero-padded where the box leaves the image), ready to paste;
        with `channels` (positions in train_classes) only those. `full`: each image's (29, H, W) full-hand
        prediction, which a prior model needs (and others ignore)."""
        if len(images) != len(regions):
            raise ValueError(f"{len(images)} images but {len(regions)} regions")
        if self.needs_prior and (full is None or len(full) != len(images)):
            raise CascadeError(f"{self.path}: this stage 2 model sees the full-hand prediction beside the crop; "
                               "give it one (the base submission's masks or stage 1's)")
        crops = []
        for image, region in zip(images, regions):
            h, w = box_hw(region.box)
            if h <= 0 or w <= 0:
                raise ValueError(f"empty region box {region.box}")
            # grey conversion of the whole image first: a 16-bit image is stretched by its own maximum, as in training
            crops.append(crop_padded(to_gray_uint8(image), region.box))
        priors = ([gated(cut_prior(m, self.prior_classes, r.box), self.prior_classes, self.prior_min_carpals)
                   for m, r in zip(full, regions)] if self.needs_prior else None)
        return predict_crops(self.net, crops, self.input_size, self.preprocess, self.device, tta_hflip, batch,
                             amp=self.amp, channels_last=self.channels_last, channels=channels, priors=priors,
                             amp_dtype=self.amp_dtype)
