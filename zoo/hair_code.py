"""Res-HAIR as the authors' public code builds it (toummHus/HAIR, net/HAIR.py and utils/ResNet.py).

The zoo's ``res_hair`` "paper" configuration follows the paper's text (zoo/hair.py, hair_hosts.py).
The public code differs from it, and its released checkpoints only load into a model laid out like
the code, so this module builds that layout as the ``res_hair`` "code" configuration:

* Hyper levels (net/HAIR.py, class HAIR): the latent, decoder levels 3, 2, 1 and the refinement.
  Each holds one Weight Box of max(4, blocks) + 1 candidates, except decoder level 3 with
  max(4, blocks); the box is one N x P matrix, P being every convolution weight of one block in
  the order qkv, qkv depth-wise, attention projection, FFN in, FFN depth-wise, FFN out
  (HyLevel.num_weights). Generated convolutions have no bias (HyConv2d ignores its ``bias``).
* The latent level is followed by a 3x3 convolution (with bias) from 8C to 4C (``reduce_latent``),
  so up4_3 maps 4C to 2C and decoder level 3 reduces 2C + 4C to 4C.
* The DAC is the code's ResNet (utils/ResNet.py, built with ch=int(1.5C), out_ch=2C,
  in_channels=8C): a 3x3 convolution in, three resolutions of three GroupNorm(24)/swish residual
  blocks with two stride-2 down-samplings, a middle block-attention-block, GroupNorm, swish and a
  3x3 convolution to 2C; the GIV is its global average.
* One selecting MLP per hyper block: 2C -> C -> C/2 -> C/4 -> N with GELU between, then softmax
  (net/HAIR.py FullyCon, mlp_depth=3).
* Patch embedding, down- and up-sampling convolutions are bias-free whatever ``bias`` says
  (net/HAIR.py: OverlapPatchEmbed, Downsample, Upsample take no bias argument from HAIR).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contract import Conditioning, RestorationModel
from zoo.restormer import ChannelLayerNorm, RestormerConfig, transformer_stage


@dataclass(frozen=True)
class HairCodeConfig:
    """The public HAIR constructor's widths and depths; the box sizes follow from the block counts."""

    host: RestormerConfig = RestormerConfig()


def code_candidates(config: HairCodeConfig) -> dict[str, int]:
    """Weight Box size N per hyper level: max(4, blocks) + 1, decoder level 3 max(4, blocks) (net/HAIR.py)."""
    host = config.host
    b1, b2, b3, b4 = host.blocks
    return {"latent": max(4, b4) + 1, "decoder_level3": max(4, b3), "decoder_level2": max(4, b2) + 1,
            "decoder_level1": max(4, b1) + 1, "refinement": max(4, host.refinement_blocks) + 1}


# ----------------------------------------------------------------------------------------------
# Hyper levels: blocks whose convolution weights come from a flat Weight Box


@dataclass(frozen=True)
class BoxSegment:
    """One generated convolution: its slice of a Weight Box row and its geometry."""

    name: str
    out_channels: int
    in_per_group: int
    kernel: int
    groups: int

    @property
    def size(self) -> int:
        """Number of weights of the convolution."""
        return self.out_channels * self.in_per_group * self.kernel ** 2


def box_segments(dim: int, expansion: float) -> tuple[BoxSegment, ...]:
    """The six convolutions of a block in the order of a Weight Box row (net/HAIR.py HyLevel.num_weights)."""
    hidden = int(dim * expansion)
    return (BoxSegment("qkv", 3 * dim, dim, 1, 1),
            BoxSegment("qkv_dwconv", 3 * dim, 1, 3, 3 * dim),
            BoxSegment("attn_out", dim, dim, 1, 1),
            BoxSegment("ffn_in", 2 * hidden, dim, 1, 1),
            BoxSegment("ffn_dwconv", 2 * hidden, 1, 3, 2 * hidden),
            BoxSegment("ffn_out", dim, hidden, 1, 1))


def per_sample_conv2d(x: Tensor, weights: Tensor, segment: BoxSegment) -> Tensor:
    """Convolve sample b of `x` with its own kernel weights[b] (B x segment.size), as one grouped convolution."""
    batch, channels, height, width = x.shape
    kernels = weights.reshape(batch * segment.out_channels, segment.in_per_group, segment.kernel, segment.kernel)
    y = F.conv2d(x.reshape(1, batch * channels, height, width), kernels, padding=segment.kernel // 2,
                 groups=batch * segment.groups)
    return y.view(batch, segment.out_channels, *y.shape[-2:])


class GeneratedAttention(nn.Module):
    """Restormer's MDTA with per-sample generated convolutions; only the temperature is its own."""

    def __init__(self, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))

    def forward(self, x: Tensor, weights: dict[str, Tensor], segments: dict[str, BoxSegment]) -> Tensor:
        b, c, h, w = x.shape
        qkv = per_sample_conv2d(per_sample_conv2d(x, weights["qkv"], segments["qkv"]),
                                weights["qkv_dwconv"], segments["qkv_dwconv"])
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in qkv.chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return per_sample_conv2d((attention @ v).reshape(b, c, h, w), weights["attn_out"], segments["attn_out"])


class GeneratedBlock(nn.Module):
    """x + MDTA(LN(x)), x + GDFN(LN(x)) with generated convolutions (net/HAIR.py Hytrans)."""

    def __init__(self, dim: int, heads: int, layer_norm: str):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, layer_norm)
        self.attn = GeneratedAttention(heads)
        self.norm2 = ChannelLayerNorm(dim, layer_norm)

    def forward(self, x: Tensor, weights: dict[str, Tensor], segments: dict[str, BoxSegment]) -> Tensor:
        x = x + self.attn(self.norm1(x), weights, segments)
        y = per_sample_conv2d(self.norm2(x), weights["ffn_in"], segments["ffn_in"])
        gate, value = per_sample_conv2d(y, weights["ffn_dwconv"], segments["ffn_dwconv"]).chunk(2, dim=1)
        return x + per_sample_conv2d(F.gelu(gate) * value, weights["ffn_out"], segments["ffn_out"])


class SelectingMLP(nn.Module):
    """GIV -> softmax selecting vector over N candidates; the width halves `depth` times (net/HAIR.py FullyCon)."""

    def __init__(self, giv_channels: int, candidates: int, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        width = giv_channels
        for _ in range(depth):
            layers += [nn.Linear(width, width // 2), nn.GELU()]
            width //= 2
        self.mlp = nn.Sequential(*layers, nn.Linear(width, candidates))

    def forward(self, giv: Tensor) -> Tensor:
        return self.mlp(giv).softmax(dim=-1)


class GeneratedLevel(nn.Module):
    """Blocks sharing one N x P Weight Box; each block mixes its weights with its own selecting MLP."""

    def __init__(self, dim: int, heads: int, blocks: int, candidates: int, giv_channels: int,
                 expansion: float, layer_norm: str):
        super().__init__()
        self.segments = {s.name: s for s in box_segments(dim, expansion)}
        self.blocks = nn.ModuleList(GeneratedBlock(dim, heads, layer_norm) for _ in range(blocks))
        self.selectors = nn.ModuleList(SelectingMLP(giv_channels, candidates) for _ in range(blocks))
        self.weight_box = nn.Parameter(torch.empty(candidates, sum(s.size for s in self.segments.values())))
        self.reset_box()
        self.last_selections: list[Tensor] = []  # detached, for inspection

    def reset_box(self) -> None:
        """Each candidate initialised as nn.Conv2d initialises its weights: U(+-1/sqrt(fan_in)) (net/HAIR.py)."""
        start = 0
        with torch.no_grad():
            for segment in self.segments.values():
                bound = (segment.in_per_group * segment.kernel ** 2) ** -0.5
                self.weight_box[:, start:start + segment.size].uniform_(-bound, bound)
                start += segment.size

    def split(self, weights: Tensor) -> dict[str, Tensor]:
        """A B x P row of mixed weights cut into the block's six convolutions."""
        pieces = weights.split([s.size for s in self.segments.values()], dim=1)
        return dict(zip(self.segments, pieces))

    def forward(self, x: Tensor, giv: Tensor) -> Tensor:
        self.last_selections = []
        for block, selector in zip(self.blocks, self.selectors):
            selection = selector(giv)
            self.last_selections.append(selection.detach())
            x = block(x, self.split(selection @ self.weight_box), self.segments)
        return x


# ----------------------------------------------------------------------------------------------
# The DAC: utils/ResNet.py with its defaults (ch_mult (1, 1, 1), 3 residual blocks, no time embedding)


def swish(x: Tensor) -> Tensor:
    """x * sigmoid(x) (utils/ResNet.py nonlinearity)."""
    return x * torch.sigmoid(x)


def dac_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 24 groups and eps 1e-6 (utils/ResNet.py Normalize)."""
    return nn.GroupNorm(24, channels, eps=1e-6)


class DacResBlock(nn.Module):
    """x + conv(swish(GN(conv(swish(GN(x)))))) at constant width."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = dac_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = dac_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(swish(self.norm2(self.conv1(swish(self.norm1(x))))))


class DacDownsample(nn.Module):
    """Stride-2 3x3 convolution after padding one pixel right and bottom (utils/ResNet.py Downsample)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class DacAttention(nn.Module):
    """Single-head self-attention over pixels, with a residual (utils/ResNet.py AttnBlock)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = dac_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q = self.q(y).flatten(2).transpose(1, 2)  # b, hw, c
        k, v = self.k(y).flatten(2), self.v(y).flatten(2)  # b, c, hw
        attention = (q @ k * c ** -0.5).softmax(dim=-1)  # b, hw (queries), hw (keys)
        out = (v @ attention.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class DacLevel(nn.Module):
    """Residual blocks at one resolution, then (except the last level) a down-sampling."""

    def __init__(self, channels: int, blocks: int, downsample: bool):
        super().__init__()
        self.block = nn.ModuleList(DacResBlock(channels) for _ in range(blocks))
        self.downsample = DacDownsample(channels) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class DacMiddle(nn.Module):
    """Residual block, attention, residual block."""

    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = DacResBlock(channels)
        self.attn_1 = DacAttention(channels)
        self.block_2 = DacResBlock(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class CodeDac(nn.Module):
    """The code's degradation-aware classifier: features (B x in x H x W) -> GIV (B x out)."""

    def __init__(self, in_channels: int, width: int, out_channels: int, levels: int = 3, blocks: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.down = nn.ModuleList(DacLevel(width, blocks, downsample=i < levels - 1) for i in range(levels))
        self.mid = DacMiddle(width)
        self.norm_out = dac_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        x = self.conv_out(swish(self.norm_out(self.mid(x))))
        return x.mean(dim=(-1, -2))  # net/HAIR.py forward: feature.mean(dim=(-1, -2))


# ----------------------------------------------------------------------------------------------


class HairCode(RestorationModel):
    """Res-HAIR laid out as net/HAIR.py builds it, so that the authors' checkpoints load into it."""

    pad_multiple = 8  # three 2x down-samplings

    def __init__(self, config: HairCodeConfig):
        super().__init__()
        host = config.host
        c, (n1, n2, n3, n4), (h1, h2, h3, h4) = host.width, host.blocks, host.heads
        n = code_candidates(config)
        giv = 2 * c  # ch_fea = dim * 2

        def level(dim: int, heads: int, blocks: int, name: str) -> GeneratedLevel:
            return GeneratedLevel(dim, heads, blocks, n[name], giv, host.ffn_expansion, host.layer_norm)

        def down(dim: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

        def up(dim: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

        self.patch_embed = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.encoder_level1 = transformer_stage(n1, c, h1, host)
        self.down1_2 = down(c)
        self.encoder_level2 = transformer_stage(n2, 2 * c, h2, host)
        self.down2_3 = down(2 * c)
        self.encoder_level3 = transformer_stage(n3, 4 * c, h3, host)
        self.down3_4 = down(4 * c)
        self.dac = CodeDac(8 * c, int(c * 1.5), giv)
        self.latent = level(8 * c, h4, n4, "latent")
        self.reduce_latent = nn.Conv2d(8 * c, 4 * c, 3, padding=1)  # with bias (nn.Conv2d's default)
        self.up4_3 = up(4 * c)  # 4C -> 2C channels
        # net/HAIR.py writes the input width as int(dim*2)+192: 6C at its only runnable width, dim 48.
        self.reduce_chan_level3 = nn.Conv2d(6 * c, 4 * c, 1, bias=host.bias)
        self.decoder_level3 = level(4 * c, h3, n3, "decoder_level3")
        self.up3_2 = up(4 * c)
        self.reduce_chan_level2 = nn.Conv2d(4 * c, 2 * c, 1, bias=host.bias)
        self.decoder_level2 = level(2 * c, h2, n2, "decoder_level2")
        self.up2_1 = up(2 * c)
        self.decoder_level1 = level(2 * c, h1, n1, "decoder_level1")
        self.refinement = level(2 * c, h1, host.refinement_blocks, "refinement")
        self.output = nn.Conv2d(2 * c, 3, 3, padding=1, bias=host.bias)
        self.last_giv: Tensor | None = None

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        enc1 = self.encoder_level1(self.patch_embed(degraded))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        bottom = self.down3_4(enc3)
        giv = self.dac(bottom)
        self.last_giv = giv.detach()
        latent = self.reduce_latent(self.latent(bottom, giv))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)), giv)
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)), giv)
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1), giv)
        return self.output(self.refinement(dec1, giv)) + degraded

    def selections(self) -> dict[str, Tensor]:
        """The selecting vector (B x N) of every hyper block from the last forward pass."""
        return {f"{name}.{i}": s for name in ("latent", "decoder_level3", "decoder_level2", "decoder_level1",
                                             "refinement")
                for i, s in enumerate(getattr(self, name).last_selections)}
