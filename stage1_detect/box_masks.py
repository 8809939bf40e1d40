"""Instance masks at the image's native size, computed inside each instance's box only.

ultralytics' `process_mask_native` upsamples every instance's prototype logits to the whole image (N x H x W
floats), thresholds them and then zeroes everything outside the box; at 2048 px that was most of stage 1's time.
Bilinear resampling is separable, so the logits inside a box are `Ry @ P @ Rx.T`, where P is the instance's
prototype-resolution logits and Ry / Rx are the rows of the 1-D resampling operators for the box's rows and
columns. The operators are built per image shape and checked once against ultralytics' own output; a shape
whose geometry disagrees (another ultralytics version) falls back to ultralytics' path.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

# fraction of pixels allowed to differ from ultralytics in the check: float rounding flips a logit within
# ~1e-7 of zero now and then; a geometry off by half a pixel differs on a few percent of a random field
_CHECK_TOLERANCE = 1e-4


def _axis_operator(m: int, f: int, lo: int, hi: int, n: int) -> torch.Tensor:
    """(n, m): one axis as ultralytics resamples it: x f bilinear, keep [lo, hi) (the letterbox content),
    bilinear to n. Built by resampling the unit vectors, so the weights are torch's own."""
    unit = torch.eye(m, dtype=torch.float64)[None, :, :, None]  # channel j: the unit vector at prototype row j
    if f > 1:
        unit = F.interpolate(unit, scale_factor=(f, 1), mode="bilinear")
    return F.interpolate(unit[:, :, lo:hi], size=(n, 1), mode="bilinear")[0, :, :, 0].T.contiguous()


def ultralytics_operators(mh: int, mw: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The row (h, mh) and column (w, mw) operators of `process_mask_native` for prototypes of (mh, mw) and an
    image of (h, w), following its geometry (ultralytics 8.4): prototypes are 1/4 of the letterboxed input,
    upsampled by f in {1, 2, 4} so that the letterbox padding is cropped on whole pixels, then resized."""
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)
    fh, fw = f * mh, f * mw
    g = min(fh / h, fw / w)
    top = round((fh - max(round(h * g), 1)) / 2 - 0.1)
    left = round((fw - max(round(w * g), 1)) / 2 - 0.1)
    return (_axis_operator(mh, f, top, top + max(round(h * g), 1), h),
            _axis_operator(mw, f, left, left + max(round(w * g), 1), w))


def _band(op: torch.Tensor) -> tuple[list[int], list[int]]:
    """First and last prototype index each output position reads (bilinear: at most two, contiguous)."""
    nz = op != 0
    first = nz.to(torch.int8).argmax(1)
    last = op.shape[1] - 1 - nz.flip(1).to(torch.int8).argmax(1)
    return first.tolist(), last.tolist()


class _Operators:
    def __init__(self, mh: int, mw: int, h: int, w: int, device: torch.device):
        ay, ax = ultralytics_operators(mh, mw, h, w)
        self.rows, self.cols = _band(ay), _band(ax)
        self.ay, self.ax = ay.to(device), ax.to(device)
        self.ok = self._agrees_with_ultralytics(mh, mw, h, w, device)

    def _agrees_with_ultralytics(self, mh, mw, h, w, device) -> bool:
        from ultralytics.utils import ops

        field = torch.randn(1, mh, mw, generator=torch.Generator().manual_seed(0)).to(device)
        box = torch.tensor([[0.0, 0.0, w, h]], device=device)
        theirs = ops.process_mask_native(field, torch.ones(1, 1, device=device), box, (h, w))[0].bool()
        ours = (self.ay @ field[0].double() @ self.ax.T) > 0
        return (theirs != ours).float().mean().item() <= _CHECK_TOLERANCE


class BoxMasks:
    """Callable: (prototypes, coefficients, boxes in native pixels, (h, w)) -> per instance (y0, x0, bool mask
    inside the box), or None where the geometry is not ultralytics' (then use its own path)."""

    def __init__(self):
        self._operators: dict[tuple, _Operators] = {}

    def __call__(self, proto: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor,
                 hw: tuple[int, int]) -> list[tuple[int, int, torch.Tensor]] | None:
        c, mh, mw = proto.shape
        h, w = hw
        key = (mh, mw, h, w, str(proto.device))
        if key not in self._operators:
            self._operators[key] = _Operators(mh, mw, h, w, proto.device)
            if not self._operators[key].ok:
                warnings.warn(f"stage 1: this ultralytics version resamples masks differently for {h}x{w} images; "
                              "using its own (slower) path", stacklevel=2)
        ops = self._operators[key]
        if not ops.ok:
            return None
        # float64: the matmuls must not run in TF32 on a GPU, and the sizes are tiny
        logits = (coeffs.double() @ proto.double().view(c, -1)).view(-1, mh, mw)
        out = []
        for p, (x1, y1, x2, y2) in zip(logits, boxes.tolist()):
            # ultralytics keeps column x where x1 <= x < x2, i.e. x in [ceil(x1), ceil(x2))
            r0, r1 = max(math.ceil(y1), 0), min(math.ceil(y2), h)
            c0, c1 = max(math.ceil(x1), 0), min(math.ceil(x2), w)
            if r1 <= r0 or c1 <= c0:
                out.append((r0, c0, torch.zeros((0, 0), dtype=torch.bool, device=proto.device)))
                continue
            py = slice(ops.rows[0][r0], ops.rows[1][r1 - 1] + 1)  # the prototype rows these output rows read
            px = slice(ops.cols[0][c0], ops.cols[1][c1 - 1] + 1)
            out.append((r0, c0, (ops.ay[r0:r1, py] @ p[py, px] @ ops.ax[c0:c1, px].T) > 0))
        return out
