"""HyperRes: meta blocks generate a restoration network for any degradation level (Aharon & Ben-Artzi).

The main network (HyperRes Sec. 3.2, Fig. 3; the authors' models/HyperRes.py as collected in
../shared/ARCHITECTURES.md): a stride-2 3x3 convolution down to `width` channels, residual
blocks of two generated 3x3 convolutions with a ReLU between, a shared 3x3 convolution and a
skip from the head over all blocks, then a 3x3 convolution to 4 x width, pixel shuffle x2,
ReLU, 3x3, ReLU, 3x3 to the image. Every generated kernel is affine in the level c
(Eq. 2: k = c W + b); the head and tail are shared by all generated networks. With width 64
and 16 blocks it has 2,588,483 parameters, whatever the number of levels it is trained on.

Training (Eq. 1, Fig. 3) generates one main network per training level present in the batch
and sums their L1 losses without weights. The level estimator (Sec. 4.3) is the authors' NoiseNet
(models/NoiseNet.py, 330,561 parameters at width 64; 2,919,044 in all); it is trained in a second
stage so that the model can also restore blindly, and reads the median over a fixed grid of
128 x 128 crops. The authors' released weights load through zoo/released/hyperres.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contract import Conditioning, LossTerms, PixelLoss, RestorationModel, TrainingStage
from zoo.factory import register_model


@dataclass(frozen=True)
class HyperResConfig:
    """Width and depth of the main network, and of the level estimator."""

    width: int = 64  # ifryed/HyperRes models/HyperRes.py
    blocks: int = 16  # "16 residual blocks" (Sec. 3.2)
    estimator_width: int = 64  # the estimator's flatten is 64 x 4 x 4 = 1,024 (models/NoiseNet.py)
    estimator_fraction: float = 0.15  # share of the steps spent training the estimator afterwards


class MetaConv2d(nn.Module):
    """A 3x3 convolution whose kernel and bias are generated from the level: c * W + B (Eq. 2).

    The public HyperConv (models/HyperRes.py) generates both with one ``nn.Linear(1, out x (in x 9
    + 1))`` of the level: its weight column holds the slopes and its bias the bases, kernel first
    (out, in, 3, 3 in C order) then the conv bias, which is exactly (slope, base) here.
    """

    def __init__(self, channels: int):
        super().__init__()
        shape = (channels, channels, 3, 3)
        self.slope_weight, self.base_weight = nn.Parameter(torch.empty(shape)), nn.Parameter(torch.empty(shape))
        self.slope_bias, self.base_bias = nn.Parameter(torch.empty(channels)), nn.Parameter(torch.empty(channels))
        # Both halves start like an ordinary convolution (PyTorch's default initialisation); the
        # public code scales a Kaiming init by 0.1 instead, which trains slowly at 16 blocks.
        fan_in = channels * 9
        for weight in (self.slope_weight, self.base_weight):
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        for bias in (self.slope_bias, self.base_bias):
            nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def kernel(self, level: float | Tensor) -> tuple[Tensor, Tensor]:
        """The generated (weight, bias) for one scalar level."""
        return level * self.slope_weight + self.base_weight, level * self.slope_bias + self.base_bias

    def forward(self, x: Tensor, level: float | Tensor) -> Tensor:
        weight, bias = self.kernel(level)
        return F.conv2d(x, weight, bias, padding=1)


class MetaResidualBlock(nn.Module):
    """x + conv(relu(conv(x))) with both kernels generated from the level."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.conv2 = MetaConv2d(channels), MetaConv2d(channels)

    def forward(self, x: Tensor, level: float | Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x, level)), level)


class EstimatorResBlock(nn.Module):
    """x + conv(relu(conv(x))): the residual unit of the authors' NoiseNet (ifryed/HyperRes models/NoiseNet.py)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x))) + x


class NoiseNet(nn.Module):
    """The authors' level estimator (Sec. 4.3; ifryed/HyperRes models/NoiseNet.py) on one 128 x 128 crop.

    A stride-2 3x3 convolution (no activation after it), then four times [residual unit, 2x2
    max-pooling], so a 128 x 128 crop in [0, 1] becomes width x 4 x 4 (1,024 at width 64); then
    fully connected 1,024 -> 32 -> 16 -> 1 with ReLUs between. At width 64 it has 330,561
    parameters, like the public model; the module names are the public ones, so a released
    ``noise_detect.pth`` needs no renaming.

    Units: the public last layer regresses sigma on the 0-255 scale; here it regresses the level
    sigma / 255, the scale of ``Conditioning.level``, so that training steps of AdamW (about `lr`
    per weight) can reach it. Loading a released file divides that layer's weight and bias by 255
    (zoo/released/hyperres.py): the same function up to float32 rounding (6e-8 on the test fixture);
    ``forward`` still returns sigma.
    """

    crop = 128  # the public crop_size
    sigma_scale = 255.0  # sigma = 255 x level (public norm_factor)

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        stages: list[nn.Module] = []
        for _ in range(4):
            stages += [EstimatorResBlock(width), nn.MaxPool2d(2)]
        self.conv_seq = nn.Sequential(*stages)
        side = self.crop // 32  # one stride-2 convolution and four 2x2 poolings
        self.fc_seq = nn.Sequential(nn.Linear(width * side * side, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                                    nn.Linear(16, 1))

    def level(self, crops: Tensor) -> Tensor:
        """The level (sigma / 255) of each 128 x 128 crop, shape (N,)."""
        if crops.shape[-2:] != (self.crop, self.crop):
            raise ValueError(f"NoiseNet reads {self.crop}x{self.crop} crops, got {tuple(crops.shape[-2:])}; "
                             "use HyperRes.estimate_level for other sizes")
        return self.fc_seq(self.conv_seq(self.conv1(crops)).flatten(1)).squeeze(1)

    def forward(self, crops: Tensor) -> Tensor:
        """Sigma on the 0-255 scale of each 128 x 128 crop, shape (N,), like the public model."""
        return self.sigma_scale * self.level(crops)


def reflect_to_at_least(images: Tensor, size: int) -> Tensor:
    """Reflect-pad a side shorter than `size` up to `size` (symmetrically, repeating the reflection
    as often as a small image needs): mirrored pixels keep the noise's per-pixel statistics, which
    resizing would change."""
    while images.shape[-2] < size or images.shape[-1] < size:
        h, w = images.shape[-2:]
        dh, dw = min(max(size - h, 0), h - 1), min(max(size - w, 0), w - 1)
        if dh == 0 and dw == 0:  # a 1-pixel side cannot be reflected
            mode = "replicate"
            dh, dw = max(size - h, 0), max(size - w, 0)
        else:
            mode = "reflect"
        images = F.pad(images, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode=mode)
    return images


def grid_crops(images: Tensor, size: int) -> tuple[Tensor, int]:
    """The non-overlapping `size` x `size` crops of a centred grid over each image (reflect-padded
    first when a side is shorter), as (B x n, C, size, size) with n crops per image."""
    images = reflect_to_at_least(images, size)
    b, c, h, w = images.shape
    rows, cols = h // size, w // size
    top, left = (h - rows * size) // 2, (w - cols * size) // 2
    grid = images[:, :, top:top + rows * size, left:left + cols * size]
    crops = grid.reshape(b, c, rows, size, cols, size).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, size, size)
    return crops, rows * cols


def median(values: Tensor, dim: int) -> Tensor:
    """The median along `dim`, the mean of the two middle values for an even count (differentiable)."""
    ordered = values.sort(dim=dim).values
    n = ordered.shape[dim]
    low, high = ordered.narrow(dim, (n - 1) // 2, 1), ordered.narrow(dim, n // 2, 1)
    return ((low + high) / 2).squeeze(dim)


class HyperRes(RestorationModel):
    """Shared head and tail around residual blocks generated for the requested level."""

    pad_multiple = 2  # one stride-2 convolution, undone by one pixel shuffle

    def __init__(self, config: HyperResConfig):
        super().__init__()
        w = config.width
        self.config = config
        self.head = nn.Conv2d(3, w, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(MetaResidualBlock(w) for _ in range(config.blocks))
        self.body_end = nn.Conv2d(w, w, 3, padding=1)
        self.tail = nn.Sequential(
            nn.Conv2d(w, 4 * w, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 3, 3, padding=1),
        )
        self.estimator = NoiseNet(config.estimator_width)

    def main_network(self, degraded: Tensor, level: float | Tensor) -> Tensor:
        """The main network generated for one scalar `level` (normalised, e.g. sigma / 255)."""
        head = self.head(degraded)
        x = head
        for block in self.blocks:
            x = block(x, level)
        return self.tail(self.body_end(x) + head)

    def levels_of(self, degraded: Tensor, cond: Conditioning | None) -> Tensor:
        """Each sample's level: given by `cond`, or estimated from the pixels (blind mode)."""
        if cond is not None and cond.level is not None:
            return cond.level.to(degraded.dtype).reshape(-1).expand(degraded.shape[0])
        return self.estimate_level(degraded)

    def estimate_level(self, degraded: Tensor) -> Tensor:
        """Each image's level (sigma / 255): the median of the estimator over a fixed grid of 128 x 128 crops.

        The public code reads one random 128 x 128 crop (models/NoiseNet.py); here every crop of a
        centred grid of non-overlapping ones is read and the median kept, so the estimate is
        deterministic. A side shorter than 128 is reflect-padded to 128 (the noise statistics
        stay those of the image; resizing would smooth the noise).
        """
        crops, per_image = grid_crops(degraded, self.estimator.crop)
        return median(self.estimator.level(crops).reshape(degraded.shape[0], per_image), dim=1)

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        levels = self.levels_of(degraded, cond)
        out = torch.empty_like(degraded)
        # One generated network per distinct level, applied to the samples at that level.
        for level in torch.unique(levels.detach()):
            members = levels.detach() == level
            out[members] = self.main_network(degraded[members], levels[members][0])
        return out

    def training_stages(self) -> list[TrainingStage]:
        """The hypernetwork first; then the level estimator alone (it reads only degraded inputs)."""
        return [TrainingStage("main", 1.0 - self.config.estimator_fraction),
                TrainingStage("estimator", self.config.estimator_fraction)]

    def stage_parameters(self, stage: TrainingStage):
        """Main stage: everything but the estimator; estimator stage: only the estimator."""
        estimator = set(map(id, self.estimator.parameters()))
        if stage.name == "estimator":
            return list(self.estimator.parameters())
        return [p for p in self.parameters() if id(p) not in estimator]

    def training_loss(
        self, degraded: Tensor, target: Tensor, cond: Conditioning, pixel_loss: PixelLoss, stage: TrainingStage
    ) -> LossTerms:
        """Main stage: unweighted sum of the per-level L1 losses (Eq. 1); estimator stage: L1 on the level."""
        if cond.level is None:
            raise ValueError("HyperRes trains on continuous settings only: every sample needs its level "
                             "(e.g. --setting hyperres_denoise)")
        levels = cond.level.to(degraded.dtype)
        if stage.name == "estimator":
            error = F.l1_loss(self.estimate_level(degraded), levels)
            return LossTerms(total=error, parts={"level_l1": error})
        parts = {}
        for level in torch.unique(levels):
            members = levels == level
            parts[f"l1_level_{level.item() * 255:.0f}"] = pixel_loss(self.main_network(degraded[members], level), target[members])
        total = torch.stack(list(parts.values())).sum()
        return LossTerms(total=total, parts={"pixel": total, **parts})


@register_model(
    configs={
        "paper": HyperResConfig(),
        # CPU-trainable: a quarter of the width, four blocks (HyperRes Fig. 5 trains 2-16 blocks).
        "tiny": HyperResConfig(width=16, blocks=4, estimator_width=16),
    },
    summary="HyperRes: meta blocks generate the network for any level, k = c W + b (2.59M + estimator)",
    source="Aharon & Ben-Artzi, HyperRes, Sec. 3.2, 4.1, 4.3 (../shared/seeds/001)",
)
def hyperres(config: HyperResConfig) -> HyperRes:
    """Build a HyperRes (main network, meta blocks and level estimator)."""
    return HyperRes(config)
