"""Tiled restoration (harness/scoring/tiling.py): exact for a local network, close for a real zoo model."""
from __future__ import annotations

import pytest
import torch
from released import meta, write_released
from torch import nn

from harness.data import open_data
from harness.scoring.evaluation import evaluate, restore
from harness.scoring.tiling import restore_tiled, starts, tile_grid
from harness.settings import get_setting
from zoo.contract import RestorationModel


class LocalNet(RestorationModel):
    """A U-shaped, purely local network (two stride-2 convolutions, a 4x transposed one): receptive radius < 16 px."""

    pad_multiple = 4

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.down1 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 4, stride=4)
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x, cond=None):
        """x plus a residual computed at 1/4 resolution."""
        y = torch.relu(self.down2(torch.relu(self.down1(torch.relu(self.head(x))))))
        return x + self.tail(self.up(y))


def test_the_grid_is_on_the_models_multiple_and_covers_the_image():
    grid = tile_grid(50, 8)
    assert (grid.tile, grid.overlap) == (56, 16) and grid.tile % 8 == 0 and grid.stride % 8 == 0
    assert tile_grid(3, 8).tile == 16  # at least two multiples, so tiles can overlap
    assert tile_grid(64, 8, overlap=20).overlap == 24
    positions = starts(200, grid)
    assert positions[0] == 0 and positions[-1] + grid.tile == 200 and all(p % 8 == 0 for p in positions)
    assert all(b - a <= grid.stride for a, b in zip(positions, positions[1:]))
    assert starts(40, grid) == [0]
    with pytest.raises(ValueError, match="--tile must be a positive"):
        tile_grid(0, 8)


@pytest.mark.parametrize("size", [(150, 203), (97, 64), (40, 300)])
def test_a_local_network_gives_its_whole_image_output_exactly(size):
    """With overlap/4 beyond the receptive radius, every kept pixel saw exactly what it sees whole."""
    torch.manual_seed(0)
    model = LocalNet().eval()
    image = torch.rand(1, 3, *size)
    with torch.no_grad():
        whole = restore(model, image)
        for tile, overlap in [(96, 64), (64, 56), (80, 64)]:
            tiled = restore_tiled(model, image, None, tile_grid(tile, model.pad_multiple, overlap))
            assert tiled.shape == whole.shape
            assert (tiled - whole).abs().max().item() < 1e-5, (tile, overlap)


def test_a_released_restormer_tiled_is_close_to_whole_and_far_from_a_broken_tiler(tmp_path):
    """Restormer attends over the whole image, so tiles only approximate it.

    Measured (mean |difference| / max |output|): 2.1e-3 blended, 8.8e-3 with no overlap (seams),
    0.19 for tiles placed one pixel off.
    """
    from zoo.released import load_released

    path = write_released("restormer_withbias", tmp_path / "restormer.pth")
    model = load_released("restormer", path, **meta("restormer_withbias")["args"])
    torch.manual_seed(1)
    image = torch.rand(1, 3, 96, 112)
    with torch.no_grad():
        whole = restore(model, image)
        tiled = restore_tiled(model, image, None, tile_grid(64, model.pad_multiple, 32))
        seamed = restore_tiled(model, image, None, tile_grid(64, model.pad_multiple, 0))
    scale = whole.abs().max().item()
    error = lambda out: (out - whole).abs().mean().item() / scale
    assert error(tiled) < 5e-3
    assert error(seamed) > 3 * error(tiled)
    assert error(torch.roll(tiled, 1, dims=-1)) > 20 * error(tiled)


def test_evaluation_in_tiles_scores_exactly_as_whole_for_a_local_network():
    """harness.scoring.evaluation.evaluate(tile=...) on the embedded derain test set: the same per-image scores."""
    torch.manual_seed(0)
    model = LocalNet().eval()
    setting = get_setting("derain")
    data = open_data(setting)
    whole = evaluate(model, setting, data)
    tiled = evaluate(model, setting, data, tile=128, tile_overlap=64)
    for image, scores in whole.tasks["derain"].per_image.items():
        assert tiled.tasks["derain"].per_image[image]["psnr"] == pytest.approx(scores["psnr"], abs=1e-4)
