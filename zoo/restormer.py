"""Restormer: a 4-level transformer encoder-decoder with channel attention (Zamir et al., CVPR 2022).

The host network of Res-HAIR and PromptIR. Paper configuration (Restormer Sec. 4; HAIR Sec. 4.1;
../shared/ARCHITECTURES.md): blocks [4, 6, 6, 8], 4 refinement blocks, width 48, heads
[1, 2, 4, 8], GDFN expansion 2.66, bias-free convolutions, LayerNorm with bias, 26.1M parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contract import Conditioning, RestorationModel
from zoo.factory import register_model


@dataclass(frozen=True)
class RestormerConfig:
    """Widths, depths and heads of a Restormer."""

    width: int = 48
    blocks: tuple[int, int, int, int] = (4, 6, 6, 8)
    refinement_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion: float = 2.66  # GDFN expansion factor gamma (Restormer Sec. 3.2)
    bias: bool = False  # convolutions are bias-free (HAIR Sec. 9.1)
    # "WithBias" (the all-in-one releases) or "BiasFree" (Restormer's denoising releases, whose
    # LayerNorm has a scale only and does not subtract the mean: restormer_arch.py BiasFree_LayerNorm)
    layer_norm: str = "WithBias"

    def __post_init__(self):
        if self.layer_norm not in LAYER_NORMS:
            raise ValueError(f"layer_norm must be one of {LAYER_NORMS}, got {self.layer_norm!r}")


LAYER_NORMS = ("WithBias", "BiasFree")


class BiasFreeLayerNorm(nn.Module):
    """x / sqrt(var(x) + eps) * scale: no bias and, as in Restormer's code, no mean subtraction."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        variance = x.var(dim=-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(variance + self.eps) * self.weight


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels at every pixel: with a learned scale and bias, or bias-free."""

    def __init__(self, channels: int, layer_norm: str = "WithBias"):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-5) if layer_norm == "WithBias" else BiasFreeLayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: attention across channels, not pixels."""

    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out((attention @ v).reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated depth-wise feed-forward network: GELU(path 1) * path 2."""

    def __init__(self, dim: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """x + MDTA(LN(x)), then x + GDFN(LN(x)) (Restormer Fig. 2; HAIR Sec. 9.1, Fig. 5)."""

    def __init__(self, dim: int, heads: int, expansion: float, bias: bool, layer_norm: str = "WithBias"):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, layer_norm)
        self.attn = MDTA(dim, heads, bias)
        self.norm2 = ChannelLayerNorm(dim, layer_norm)
        self.ffn = GDFN(dim, expansion, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def transformer_stage(n: int, dim: int, heads: int, config: RestormerConfig) -> nn.Sequential:
    """`n` transformer blocks of width `dim`."""
    return nn.Sequential(*[TransformerBlock(dim, heads, config.ffn_expansion, config.bias, config.layer_norm)
                           for _ in range(n)])


def downsample(dim: int, bias: bool) -> nn.Sequential:
    """Halve the resolution, double the channels: 3x3 conv to dim/2, pixel-unshuffle."""
    return nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=bias), nn.PixelUnshuffle(2))


def upsample(dim: int, bias: bool) -> nn.Sequential:
    """Double the resolution, halve the channels: 3x3 conv to 2*dim, pixel-shuffle."""
    return nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=bias), nn.PixelShuffle(2))


class Restormer(RestorationModel):
    """Encoder levels 1-3, latent level 4, decoder levels 3-1, refinement, global residual."""

    pad_multiple = 8  # three 2x down-samplings (Restormer's test pads to a multiple of 8)

    def __init__(self, config: RestormerConfig):
        super().__init__()
        c, (n1, n2, n3, n4), (h1, h2, h3, h4) = config.width, config.blocks, config.heads
        bias = config.bias
        self.patch_embed = nn.Conv2d(3, c, 3, padding=1, bias=bias)
        self.encoder_level1 = transformer_stage(n1, c, h1, config)
        self.down1_2 = downsample(c, bias)
        self.encoder_level2 = transformer_stage(n2, 2 * c, h2, config)
        self.down2_3 = downsample(2 * c, bias)
        self.encoder_level3 = transformer_stage(n3, 4 * c, h3, config)
        self.down3_4 = downsample(4 * c, bias)
        self.latent = transformer_stage(n4, 8 * c, h4, config)
        self.up4_3 = upsample(8 * c, bias)
        self.reduce_chan_level3 = nn.Conv2d(8 * c, 4 * c, 1, bias=bias)
        self.decoder_level3 = transformer_stage(n3, 4 * c, h3, config)
        self.up3_2 = upsample(4 * c, bias)
        self.reduce_chan_level2 = nn.Conv2d(4 * c, 2 * c, 1, bias=bias)
        self.decoder_level2 = transformer_stage(n2, 2 * c, h2, config)
        self.up2_1 = upsample(2 * c, bias)
        # Level 1 and the refinement keep the 2C channels of the last concatenation (no 1x1 reduction).
        self.decoder_level1 = transformer_stage(n1, 2 * c, h1, config)
        self.refinement = transformer_stage(config.refinement_blocks, 2 * c, h1, config)
        self.output = nn.Conv2d(2 * c, 3, 3, padding=1, bias=bias)

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        enc1 = self.encoder_level1(self.patch_embed(degraded))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        return self.output(self.refinement(dec1)) + degraded


# CPU-trainable variant shared by the Restormer family: same topology, width 8, one block per
# level. Width 8 keeps a Res-HAIR training step (batch 8, 64x64) near 0.2 s on 2 CPU cores, so
# the default profile's 600 steps fit in about two minutes; width 16 takes twice as long.
TINY_RESTORMER = RestormerConfig(width=8, blocks=(1, 1, 1, 1), refinement_blocks=1, heads=(1, 1, 2, 4))


@register_model(
    configs={"paper": RestormerConfig(), "tiny": TINY_RESTORMER},
    summary="Restormer, transformer U-Net with channel attention (26.1M)",
    source="Zamir et al., Restormer, CVPR 2022, Sec. 3-4; HAIR Sec. 9.1",
)
def restormer(config: RestormerConfig) -> Restormer:
    """Build a Restormer from its configuration."""
    return Restormer(config)
