"""HyperRes: meta blocks generate a restoration network for any degradation level (Aharon & Ben-Artzi).

The main network (HyperRes Sec. 3.2, Fig. 3; the authors' models/HyperRes.py as collected in
../shared/ARCHITECTURES.md): a stride-2 3x3 convolution down to `width` channels, residual
blocks of two generated 3x3 convolutions with a ReLU between, a shared 3x3 convolution and a
skip from the head over all blocks, then a 3x3 convolution to 4 x width, pixel shuffle x2,
ReLU, 3x3, ReLU, 3x3 to the image. Every generated kernel is affine in the level c
(Eq. 2: k = c W + b); the head and tail are shared by all generated networks. With width 64
and 16 blocks it has 2,588,483 parameters, whatever the number of levels it is trained on.

Training (Eq. 1, Fig. 3) generates one main network per training level present in the batch
and sums their L1 losses without weights. A small level estimator (Sec. 4.3) is trained in a
second stage so that the model can also restore blindly.
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
    """A 3x3 convolution whose kernel and bias are generated from the level: c * W + B (Eq. 2)."""

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


class LevelEstimator(nn.Module):
    """Five convolutions and three fully connected layers that regress the level (Sec. 4.3).

    A stride-2 convolution, then four convolution + ReLU + 2x2 max-pooling stages; an adaptive
    average pool to 4 x 4 makes any input size give the 1,024-wide vector of the 128 x 128 crops
    the authors' estimator reads.
    """

    def __init__(self, width: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(4):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.regress = nn.Sequential(nn.Linear(width * 16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, degraded: Tensor) -> Tensor:
        return self.regress(self.features(degraded)).squeeze(1)


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
        self.estimator = LevelEstimator(config.estimator_width)

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
        """The level estimator's reading of each image (normalised like the conditioning)."""
        return self.estimator(degraded)

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
