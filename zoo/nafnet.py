"""NAFNet: a nonlinear-activation-free U-shaped baseline (Chen et al., ECCV 2022).

Paper configuration: the width-32 GoPro model of the all-in-one tables (HAIR Tab. 2 "17M"),
encoder blocks [1, 1, 1, 28], 1 middle block, decoder blocks [1, 1, 1, 1]
(megvii-research/NAFNet options/train/GoPro/NAFNet-width32.yml; ../shared/ARCHITECTURES.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from zoo.contract import Conditioning, RestorationModel
from zoo.factory import register_model


@dataclass(frozen=True)
class NAFNetConfig:
    """Width and block counts of a NAFNet."""

    width: int = 32
    encoder_blocks: tuple[int, ...] = (1, 1, 1, 28)
    middle_blocks: int = 1
    decoder_blocks: tuple[int, ...] = (1, 1, 1, 1)
    expansion: int = 2  # depth-wise and FFN channel expansion (NAFNet Sec. 3.3)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of every pixel (eps 1e-6 as in NAFNet)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them (replaces the activation)."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """Depth-wise gated mixing with simplified channel attention, then a gated FFN."""

    def __init__(self, c: int, expansion: int = 2):
        super().__init__()
        dw = c * expansion
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        ffn = c * expansion
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        # Both branches start switched off (beta = gamma = 0), as in NAFNet.
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.gate(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class NAFNet(RestorationModel):
    """U-shaped NAFNet with additive skips and a global residual."""

    def __init__(self, config: NAFNetConfig):
        super().__init__()
        c = config.width
        self.pad_multiple = 2 ** len(config.encoder_blocks)
        self.intro = nn.Conv2d(3, c, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        for n in config.encoder_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c, config.expansion) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c, config.expansion) for _ in range(config.middle_blocks)])
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in config.decoder_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c, config.expansion) for _ in range(n)]))
        self.ending = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        x = self.intro(degraded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(up(x) + skip)
        return self.ending(x) + degraded


@register_model(
    configs={
        "paper": NAFNetConfig(),
        # CPU-trainable: same topology, width 16 and a short bottleneck stack.
        "tiny": NAFNetConfig(width=16, encoder_blocks=(1, 1, 1, 2), middle_blocks=1),
    },
    summary="NAFNet width 32 (GoPro configuration), the all-in-one tables' 17M baseline",
    source="Chen et al., Simple Baselines for Image Restoration, ECCV 2022; HAIR Tab. 2",
)
def nafnet(config: NAFNetConfig) -> NAFNet:
    """Build a NAFNet from its configuration."""
    return NAFNet(config)
