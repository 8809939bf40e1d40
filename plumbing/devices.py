"""A device torch can name but this build or machine lacks (mps on Linux, xpu, cuda:3 on a one-GPU machine) is
a one-line error before any work, not a RuntimeError at the first tensor sent there."""

from __future__ import annotations

from .errors import CascadeError


def check_available(device, given) -> None:
    """Raise CascadeError naming `given` (the setting as the user wrote it) unless a tensor can live on
    `device` (a torch.device)."""
    import torch

    if device.type in ("cpu", "cuda"):  # CUDA: the callers check torch.cuda.is_available() and say so
        return
    if device.type == "meta":
        raise CascadeError(f"device {given!r}: the meta device holds no data (use cpu or cuda)")
    try:
        torch.empty(1, device=device)
    except Exception as exc:  # noqa: BLE001  (RuntimeError, AssertionError, AttributeError: by backend)
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise CascadeError(f"device {given!r}: not available in this build of torch or on this machine ({reason}); "
                           "use cpu" + (" or cuda" if torch.cuda.is_available() else "")) from None
