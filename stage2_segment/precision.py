"""The precision a network actually ran in, recorded in its checkpoint so inference repeats it.

The config asks (amp, amp_dtype, channels_last); the device decides: mixed precision runs on CUDA only, so a
checkpoint trained on the CPU with amp: true trained, and is validated and inferred, in float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from plumbing.errors import CascadeError

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Precision:
    amp_dtype: str | None  # autocast's dtype; None: float32
    channels_last: bool

    @classmethod
    def of(cls, amp: bool, amp_dtype: str, channels_last: bool, device: torch.device) -> "Precision":
        on_gpu = device.type == "cuda"
        if amp and on_gpu and amp_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise CascadeError(f"amp_dtype bfloat16: {torch.cuda.get_device_name(device)} has none "
                               "(use amp_dtype=float16)")
        return cls(amp_dtype if amp and on_gpu else None, channels_last)

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "Precision":
        """What the checkpoint trained in; one written before this was recorded trained as its config said,
        in float16 (the only mixed precision then), on a device it did not record."""
        if "precision" in ckpt:
            return cls(**ckpt["precision"])
        trained = ckpt.get("config") or {}
        return cls("float16" if trained.get("amp", True) else None, bool(trained.get("channels_last", True)))

    @property
    def dtype(self) -> torch.dtype | None:
        return DTYPES[self.amp_dtype] if self.amp_dtype else None

    @property
    def scaled(self) -> bool:
        """float16's narrow range needs the GradScaler; bfloat16 has float32's range."""
        return self.amp_dtype == "float16"

    def as_dict(self) -> dict:
        return asdict(self)
