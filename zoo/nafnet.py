"""NAFNet: a nonlinear-activation-free U-shaped baseline (Chen et al., ECCV 2022).

Paper configuration: the width-32 GoPro model of the all-in-one tables (HAIR Tab. 2 "17M"),
encoder blocks [1, 1, 1, 28], 1 middle block, decoder blocks [1, 1, 1, 1]
(megvii-research/NAFNet options/train/GoPro/NAFNet-width32.yml; ../shared/ARCHITECTURES.md).

``to_local`` is the authors' test-time local converter (``NAFNetLocal``, used for their GoPro and
REDS numbers): every global average pooling of the channel attention becomes a local one whose
window is 1.5 times the training crop, scaled to each level's resolution
(megvii-research/NAFNet basicsr/models/archs/local_arch.py; Chu et al., TLSC, arXiv:2112.04491).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


class LocalAvgPool2d(nn.Module):
    """Mean over a `kernel`-sized window around each pixel, replicate-padded back to the input size.

    A window that covers the whole map gives the global mean, as the pooling it replaces.
    ``fast_imp`` is the authors' faster, non-equivalent variant: the sums are taken on a map
    subsampled by up to `max_stride` (5, 4, 3, 2 or 1, whichever first divides the size) and
    upsampled back (local_arch.py AvgPool2d).
    """

    def __init__(self, kernel: tuple[int, int], fast_imp: bool = False, max_stride: tuple[int, int] = (5, 5)):
        super().__init__()
        self.kernel, self.fast_imp, self.max_stride = tuple(kernel), fast_imp, tuple(max_stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, fast_imp={self.fast_imp}"

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.kernel[0] >= h and self.kernel[1] >= w:
            return x.mean(dim=(2, 3), keepdim=True)
        out = self._fast(x) if self.fast_imp else F.avg_pool2d(x, (min(h, self.kernel[0]), min(w, self.kernel[1])),
                                                                  stride=1)
        dh, dw = h - out.shape[-2], w - out.shape[-1]
        # Centre the valid windows: the extra row/column goes to the bottom/right (local_arch.py auto_pad).
        return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode="replicate")

    def _fast(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        strides = (5, 4, 3, 2, 1)
        r1 = min(self.max_stride[0], next(r for r in strides if h % r == 0))
        r2 = min(self.max_stride[1], next(r for r in strides if w % r == 0))
        table = x[:, :, ::r1, ::r2].cumsum(dim=-1).cumsum(dim=-2)
        sh, sw = table.shape[-2:]
        k1, k2 = min(sh - 1, self.kernel[0] // r1), min(sw - 1, self.kernel[1] // r2)
        # k1 x k2 box sums from the integral table, without its zero row and column (as the public code).
        box = (table[:, :, k1:, k2:] - table[:, :, k1:, :-k2] - table[:, :, :-k1, k2:] + table[:, :, :-k1, :-k2])
        return F.interpolate(box / (k1 * k2), scale_factor=(r1, r2))


def to_local(model: NAFNet, train_size=(1, 3, 256, 256), fast_imp: bool = False) -> NAFNet:
    """Replace `model`'s global poolings by the local ones of NAFNetLocal for crops of `train_size`; in place.

    As local_arch.py, each window is int(1.5 x crop) scaled by the level's feature size at the
    (padded) training crop over the crop size, fixed once for every later input size.
    """
    crop_h, crop_w = train_size[-2:]
    base_h, base_w = int(crop_h * 1.5), int(crop_w * 1.5)
    m = model.pad_multiple  # the public forward pads to this multiple before the first pooling
    padded_h, padded_w = -(-crop_h // m) * m, -(-crop_w // m) * m
    depth = len(model.encoders)
    levels = [(stage, i) for i, stage in enumerate(model.encoders)] + [(model.middle, depth)]
    levels += [(stage, depth - 1 - j) for j, stage in enumerate(model.decoders)]
    for stage, level in levels:
        fh, fw = padded_h // 2 ** level, padded_w // 2 ** level
        kernel = (fh * base_h // crop_h, fw * base_w // crop_w)
        max_stride = (max(1, 5 * fh // crop_h), max(1, 5 * fw // crop_w))
        for block in stage:
            if not isinstance(block.sca[0], nn.AdaptiveAvgPool2d):
                raise ValueError("to_local: the model is already local")
            block.sca[0] = LocalAvgPool2d(kernel, fast_imp, max_stride)
    return model


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
