"""PromptIR: Restormer with learned prompts in the decoder (Potlapalli et al., NeurIPS 2023).

Three prompt blocks follow the latent and decoder levels 3 and 2. A prompt-generation block
mixes a few learned prompt components with weights predicted from the pooled features; a
prompt-interaction block runs one transformer block on [features, prompt] and a 1x1
convolution back to the level's width. Numbers from the authors' net/model.py as collected in
../shared/ARCHITECTURES.md: prompt dims (64, 128, 320), 5 components, prompt sizes
(64, 32, 16), interaction blocks on 160/320/704 channels with 4 heads.

The public constructor also builds six 1x1 convolutions that forward never uses (215,296
parameters); they are left out here, so the paper configuration has 35.37M parameters rather
than the 35.59M that counting those gives (the papers round to 36M).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contract import Conditioning, RestorationModel
from zoo.factory import register_model
from zoo.restormer import TINY_RESTORMER, RestormerConfig, TransformerBlock, downsample, transformer_stage, upsample


@dataclass(frozen=True)
class PromptIRConfig:
    """A Restormer trunk plus the prompt blocks' sizes, ordered decoder level 1, 2, 3."""

    trunk: RestormerConfig = RestormerConfig()
    prompt_dims: tuple[int, int, int] = (64, 128, 320)
    prompt_sizes: tuple[int, int, int] = (64, 32, 16)
    prompt_components: int = 5
    interaction_heads: int = 4  # heads[2] of the trunk in PromptIR's model.py


class PromptGeneration(nn.Module):
    """Softmax-weighted sum of learned prompt components, resized to the features, then 3x3 conv."""

    def __init__(self, feature_dim: int, prompt_dim: int, components: int, size: int):
        super().__init__()
        # Components start uniform in [0, 1) as in the public code.
        self.components = nn.Parameter(torch.rand(components, prompt_dim, size, size))
        self.weights = nn.Linear(feature_dim, components)
        self.conv = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, features: Tensor) -> Tensor:
        weights = self.weights(features.mean(dim=(2, 3))).softmax(dim=1)  # B x components
        prompt = torch.einsum("bn,nchw->bchw", weights, self.components)
        prompt = F.interpolate(prompt, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(prompt)


class PromptBlock(nn.Module):
    """Generate a prompt from `x`, let it interact with `x`, and return to `x`'s width."""

    def __init__(self, dim: int, prompt_dim: int, out_dim: int, config: PromptIRConfig, size: int):
        super().__init__()
        trunk = config.trunk
        self.generate = PromptGeneration(dim, prompt_dim, config.prompt_components, size)
        self.interact = TransformerBlock(dim + prompt_dim, config.interaction_heads, trunk.ffn_expansion, trunk.bias,
                                         trunk.layer_norm)
        self.reduce = nn.Conv2d(dim + prompt_dim, out_dim, 1, bias=trunk.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduce(self.interact(torch.cat([x, self.generate(x)], 1)))


class PromptIR(RestorationModel):
    """Restormer encoder; decoder levels 3 and 2 and the latent each followed by a prompt block."""

    pad_multiple = 8

    def __init__(self, config: PromptIRConfig):
        super().__init__()
        t = config.trunk
        c, (n1, n2, n3, n4), (h1, h2, h3, h4) = t.width, t.blocks, t.heads
        (p1, p2, p3), (s1, s2, s3) = config.prompt_dims, config.prompt_sizes
        self.patch_embed = nn.Conv2d(3, c, 3, padding=1, bias=t.bias)
        self.encoder_level1 = transformer_stage(n1, c, h1, t)
        self.down1_2 = downsample(c, t.bias)
        self.encoder_level2 = transformer_stage(n2, 2 * c, h2, t)
        self.down2_3 = downsample(2 * c, t.bias)
        self.encoder_level3 = transformer_stage(n3, 4 * c, h3, t)
        self.down3_4 = downsample(4 * c, t.bias)
        self.latent = transformer_stage(n4, 8 * c, h4, t)
        # PromptIR's channel flow: each prompt block reduces to the width of the level below it.
        self.prompt3 = PromptBlock(8 * c, p3, 4 * c, config, s3)
        self.up4_3 = upsample(4 * c, t.bias)
        self.reduce_chan_level3 = nn.Conv2d(2 * c + 4 * c, 4 * c, 1, bias=t.bias)
        self.decoder_level3 = transformer_stage(n3, 4 * c, h3, t)
        self.prompt2 = PromptBlock(4 * c, p2, 4 * c, config, s2)
        self.up3_2 = upsample(4 * c, t.bias)
        self.reduce_chan_level2 = nn.Conv2d(4 * c, 2 * c, 1, bias=t.bias)
        self.decoder_level2 = transformer_stage(n2, 2 * c, h2, t)
        self.prompt1 = PromptBlock(2 * c, p1, 2 * c, config, s1)
        self.up2_1 = upsample(2 * c, t.bias)
        self.decoder_level1 = transformer_stage(n1, 2 * c, h1, t)
        self.refinement = transformer_stage(t.refinement_blocks, 2 * c, h1, t)
        self.output = nn.Conv2d(2 * c, 3, 3, padding=1, bias=t.bias)

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        enc1 = self.encoder_level1(self.patch_embed(degraded))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.prompt3(self.latent(self.down3_4(enc3)))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec3 = self.prompt2(dec3)
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec2 = self.prompt1(dec2)
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        return self.output(self.refinement(dec1)) + degraded


@register_model(
    configs={
        "paper": PromptIRConfig(),
        # Tiny: the tiny Restormer trunk with narrow, small prompts.
        "tiny": PromptIRConfig(trunk=TINY_RESTORMER, prompt_dims=(8, 16, 32), prompt_sizes=(16, 8, 4),
                               interaction_heads=2),
    },
    summary="PromptIR, Restormer with prompt blocks in the decoder (35.4M; papers: 36M)",
    source="Potlapalli et al., PromptIR, NeurIPS 2023; va1shn9v/PromptIR net/model.py",
)
def promptir(config: PromptIRConfig) -> PromptIR:
    """Build a PromptIR from its configuration."""
    return PromptIR(config)
