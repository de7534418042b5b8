"""SSIM and MSE of image planes as one fused CPU loop (numba), for `harness.scoring.metrics` on CPU.

Separate torch operations each stream whole maps through memory (about fifty passes for SSIM);
here every row is read once, its four maps (a = x + y, d = x - y, a^2, d^2, centred by near-mean
constants so that float32 keeps about 1e-7 of accuracy) are filtered along the row into a ring of
`window` rows, and each output row is filtered down the ring and turned into SSIM values at once.
The buffers are a few kilobytes and stay in the L1 cache. The algebra is the one described in
`harness.scoring.metrics`: SSIM from the local moments of a and d, in units of the window sums.

The kernel releases the GIL, so `harness.scoring.metrics` runs chunks of images on several threads.
It is compiled on first use and cached next to this file (numba's cache=True).
"""
from __future__ import annotations

import numba
import numpy as np

# reassociation lets LLVM vectorise the row sums and contract multiply-adds into FMAs; no
# 'nnan'/'ninf': a NaN in an image must give a NaN score, never an arbitrary number. The numpy
# error model divides without a zero check (IEEE results), which lets the SSIM loop vectorise.
_FAST = {"reassoc", "contract", "nsz"}


@numba.njit(inline="always")
def _clamp(value, low, high):  # pragma: no cover - compiled by numba
    """`value` limited to [low, high]; numba's min and max keep a NaN (as torch.clamp does), so a
    broken image scores NaN (pinned by tests/test_protocols.py)."""
    return min(max(value, low), high)


def _build(window: int):
    """Compile-ready kernel for a window of `window` taps (a constant, so LLVM unrolls the tap loops)."""
    k = window

    @numba.njit(nogil=True, fastmath=_FAST, error_model="numpy", cache=True)
    def planes_ssim_mse(x, y, taps, consts, ssim_out, mse_out):  # pragma: no cover - compiled by numba
        planes, h, w = x.shape
        ho, wo = h - k + 1, w - k + 1
        inv_scale, c1x2, c2x2, scale, zero = consts[0], consts[1], consts[2], consts[3], consts[4]
        low, high = consts[5], consts[6]  # clipping bounds (-inf, inf: none)
        rows = np.empty((4, w), x.dtype)  # a, d, a^2, d^2 of the current input row
        clipped = np.empty((2, w), x.dtype)  # x and y of the current input row, clipped
        # the last k rows filtered along the row, each stored twice (slots s and s + k) so that
        # any k consecutive rows are contiguous: the vertical loop then reads fixed offsets
        ring = np.empty((2 * k, 4, wo), x.dtype)
        centre = np.empty(2, x.dtype)  # storing here casts the float64 means to x's dtype
        for p in range(planes):
            # near-mean centring constants from every 4th pixel (any constant is exact)
            total_a, total_d, count = 0.0, 0.0, 0
            for r in range(0, h, 4):
                for j in range(0, w, 4):
                    xv, yv = _clamp(x[p, r, j], low, high), _clamp(y[p, r, j], low, high)
                    total_a += xv + yv
                    total_d += xv - yv
                    count += 1
            centre[0], centre[1] = total_a / count, total_d / count
            ca, cd = centre[0], centre[1]
            scaled_ca, scaled_cd = scale * ca, scale * cd
            ssim_total, mse_total = 0.0, 0.0
            for r in range(h):
                # one store per loop: more output arrays would need more run-time alias checks
                # than LLVM allows before it gives up vectorising
                xr, yr = clipped[0], clipped[1]
                x_in, y_in = x[p, r], y[p, r]
                for j in range(w):
                    xr[j] = _clamp(x_in[j], low, high)
                for j in range(w):
                    yr[j] = _clamp(y_in[j], low, high)
                a_row, d_row, aa_row, dd_row = rows[0], rows[1], rows[2], rows[3]
                for j in range(w):
                    a_row[j] = xr[j] + yr[j] - ca
                row_mse = zero
                for j in range(w):
                    diff = xr[j] - yr[j]
                    d_row[j] = diff - cd
                    row_mse += diff * diff
                mse_total += row_mse
                for j in range(w):
                    aa_row[j] = a_row[j] * a_row[j]
                for j in range(w):
                    dd_row[j] = d_row[j] * d_row[j]
                slot = r % k
                for q in range(4):
                    src, copy_a, copy_b = rows[q], ring[slot, q], ring[slot + k, q]
                    for j in range(wo):
                        total = zero
                        for t in range(k):
                            total += taps[t] * src[j + t]
                        copy_a[j] = total
                        copy_b[j] = total
                if r < k - 1:
                    continue
                top = (r - k + 1) % k
                row_ssim = zero
                for j in range(wo):
                    sa, sd, saa, sdd = zero, zero, zero, zero  # window sums: scale times the local means
                    for t in range(k):
                        sa += taps[t] * ring[top + t, 0, j]
                        sd += taps[t] * ring[top + t, 1, j]
                        saa += taps[t] * ring[top + t, 2, j]
                        sdd += taps[t] * ring[top + t, 3, j]
                    var_a = saa - sa * sa * inv_scale + c2x2  # s var(a) + 2 C2' = s (vx + vy + 2 cxy) + 2 C2'
                    var_d = sdd - sd * sd * inv_scale  # s var(d) = s (vx + vy - 2 cxy)
                    mean_a, mean_d = sa + scaled_ca, sd + scaled_cd
                    lum_a = mean_a * mean_a + c1x2  # s^2 (ux + uy)^2 + 2 C1'
                    lum_d = mean_d * mean_d  # s^2 (ux - uy)^2
                    row_ssim += (lum_a - lum_d) * (var_a - var_d) / ((lum_a + lum_d) * (var_a + var_d))
                ssim_total += row_ssim
            ssim_out[p] = ssim_total / (ho * wo)
            mse_out[p] = mse_total / (h * w)

    return planes_ssim_mse


KERNELS = {size: _build(size) for size in (7, 11)}  # scikit-image's uniform window; Wang et al.'s Gaussian


def planes_ssim_mse(x, y, taps, consts, ssim_out, mse_out) -> None:
    """Per-plane SSIM (valid windows) and MSE of P x H x W arrays `x`, `y` into float64 outputs.

    Pixels are first clipped to [low, high] (NaN kept). `taps` are the separable window's 1-D taps
    and `consts` = [1 / scale, 2 C1', 2 C2', scale, 0, low, high], both of x's dtype, so that every
    operation stays in that dtype (C1', C2' as in metrics.py).
    """
    kernel = KERNELS.get(len(taps))
    if kernel is None:
        raise ValueError(f"no fused SSIM kernel for a {len(taps)}-tap window; sizes: {sorted(KERNELS)}")
    kernel(x, y, taps, consts, ssim_out, mse_out)
