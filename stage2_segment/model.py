"""The network, what its input looks like, and the loss: one place, shared by training and inference."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from plumbing.errors import CascadeError

IN_CHANNELS = 1     # radiographs are grey: one channel, plus one per prior class (smp adapts pretrained first convolutions)
DICE_SMOOTH = 1.0   # keeps the soft Dice of a class absent from a whole batch finite and near 1 when predicted empty


def build_unet(encoder: str, classes: int, decoder_channels=(256, 128, 64, 32, 16),
               encoder_weights: str | None = None, prior_channels: int = 0) -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    try:
        return smp.Unet(encoder_name=encoder, encoder_weights=encoder_weights, in_channels=IN_CHANNELS + prior_channels,
                        classes=classes, decoder_channels=tuple(decoder_channels))
    except KeyError:
        raise CascadeError(f"encoder {encoder!r} is not a segmentation-models-pytorch encoder") from None
    except Exception as exc:  # smp raises many types when pretrained weights cannot be fetched
        if encoder_weights is None:
            raise
        raise CascadeError(f"encoder_weights {encoder_weights!r} for {encoder}: cannot be loaded "
                           f"({type(exc).__name__}); offline machines need encoder_weights=null") from None


@dataclass(frozen=True)
class Preprocess:
    """A grey uint8 crop at input size -> the float array the network sees. CLAHE is part of it (not an
    augmentation): earlier work found +0.002 to +0.005 Dice with clip 2-3.5 and a loss at clip 4."""

    mean: float
    std: float
    clahe: bool
    clahe_clip: float
    clahe_tiles: int

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        if self.clahe:
            gray = cv2.createCLAHE(self.clahe_clip, (self.clahe_tiles, self.clahe_tiles)).apply(gray)
        return ((gray.astype(np.float32) / 255.0 - self.mean) / self.std)[None]  # (1, s, s)

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "clahe": self.clahe, "clahe_clip": self.clahe_clip,
                "clahe_tiles": self.clahe_tiles}


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float, bce_weight: float) -> torch.Tensor:
    """Multi-label: an independent sigmoid per class (bones overlap). Soft Dice per class over the whole batch,
    averaged over classes, plus per-pixel BCE; Dice + BCE beat plain BCE by far on this data (0.964 vs 0.915)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits)
    dims = (0, 2, 3)
    inter = (probs * target).sum(dims)
    total = probs.sum(dims) + target.sum(dims)
    dice = 1 - (2 * inter + DICE_SMOOTH) / (total + DICE_SMOOTH)
    return dice_weight * dice.mean() + bce_weight * bce
