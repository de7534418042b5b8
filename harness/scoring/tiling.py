"""Restoring an image in overlapping tiles, for images too large for the device's memory at once.

The image is reflect-padded to the model's multiple exactly as a whole-image restoration pads it,
then cut into tiles whose size, offsets and overlap are all multiples of that multiple, so every
tile sits on the model's down-sampling grid. Each tile's output is weighted by a window that is
zero within a quarter of the overlap of an edge shared with a neighbour tile and rises linearly
to one over the next half, and the weighted outputs are averaged. A model whose receptive field
reaches at most a quarter of the overlap (a purely local network) therefore gives exactly its
whole-image output; a model with global operations (attention over the whole image, global
pooling) gives a close approximation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.contract import Conditioning, RestorationModel


@dataclass(frozen=True)
class TileGrid:
    """Tile size and overlap (both multiples of the model's pad multiple)."""

    tile: int
    overlap: int

    @property
    def stride(self) -> int:
        """Distance between the starts of neighbouring tiles."""
        return self.tile - self.overlap


def tile_grid(tile: int, multiple: int, overlap: int | None = None) -> TileGrid:
    """The grid for a requested tile side: rounded up to `multiple`, overlap about a quarter of it."""
    if tile < 1:
        raise ValueError(f"--tile must be a positive number of pixels, got {tile}")
    multiple = max(int(multiple), 1)
    side = max(-(-tile // multiple) * multiple, 2 * multiple)
    if overlap is None:
        overlap = max(multiple, round(side / 4 / multiple) * multiple)
    else:
        overlap = -(-overlap // multiple) * multiple
    return TileGrid(side, min(max(overlap, 0), side - multiple))


def starts(length: int, grid: TileGrid) -> list[int]:
    """Tile starts along one axis of `length` pixels: every stride, the last tile flush with the end."""
    if length <= grid.tile:
        return [0]
    positions = list(range(0, length - grid.tile, grid.stride))
    return positions + [length - grid.tile]


def _ramp(length: int, fade_start: bool, fade_end: bool, overlap: int, device) -> Tensor:
    """1-D weights of a tile: 0 up to overlap/4 from a shared edge, linear to 1 at 3*overlap/4."""
    position = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    weight = torch.ones(length, device=device)
    if overlap == 0:
        return weight
    rise = lambda d: ((d - overlap / 4) / (overlap / 2)).clamp(0, 1)
    if fade_start:
        weight = torch.minimum(weight, rise(position))
    if fade_end:
        weight = torch.minimum(weight, rise(length - position))
    return weight


@torch.no_grad()
def restore_tiled(model: RestorationModel, degraded: Tensor, cond: Conditioning | None, grid: TileGrid) -> Tensor:
    """Restore `degraded` (B x C x H x W) tile by tile on `grid`; the same size and range as the model's output."""
    h, w = degraded.shape[-2:]
    m = max(int(model.pad_multiple), 1)
    pad_h, pad_w = (-h) % m, (-w) % m
    x = F.pad(degraded, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else degraded
    height, width = x.shape[-2:]
    rows, cols = starts(height, grid), starts(width, grid)
    out: Tensor | None = None
    total = torch.zeros(height, width, device=x.device)
    for top in rows:
        th = min(grid.tile, height)
        wh = _ramp(th, top > 0, top + th < height, grid.overlap, x.device)
        for left in cols:
            tw = min(grid.tile, width)
            ww = _ramp(tw, left > 0, left + tw < width, grid.overlap, x.device)
            piece = model(x[..., top : top + th, left : left + tw], cond)
            if out is None:
                out = torch.zeros(*piece.shape[:-2], height, width, device=x.device, dtype=piece.dtype)
            weight = wh[:, None] * ww[None, :]
            out[..., top : top + th, left : left + tw] += piece * weight
            total[top : top + th, left : left + tw] += weight
    return (out / total)[..., :h, :w]
