"""Restormer's and PromptIR's released checkpoints (swz30/Restormer, va1shn9v/PromptIR).

Both public files wrap layers in containers the zoo does not keep: ``patch_embed.proj``,
``normN.body``, ``down1_2.body.0`` / ``up4_3.body.0``; PromptIR names its prompt blocks
``promptN``/``noiseN_level``/``reduce_noise_level``. Renaming those keys is all the mapping needs.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from torch import Tensor

from zoo.promptir import PromptIR, PromptIRConfig
from zoo.released.core import ReleasedWeightsError, register_release
from zoo.restormer import LAYER_NORMS, Restormer, RestormerConfig

# (pattern, replacement) applied in order to every public key
TRUNK_RENAMES = [
    (r"^patch_embed\.proj\.", "patch_embed."),
    (r"\.norm(\d)\.body\.", r".norm\1.norm."),
    (r"^(down\d_\d|up\d_\d)\.body\.", r"\1."),
]


def trunk_rename(key: str) -> str:
    """A public Restormer key under the zoo's name."""
    for pattern, replacement in TRUNK_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def trunk_config(dim: int, num_blocks, num_refinement_blocks: int, heads, ffn_expansion_factor: float,
                 bias: bool, LayerNorm_type: str, inp_channels: int, out_channels: int,
                 dual_pixel_task: bool, model: str) -> RestormerConfig:
    """The zoo configuration for the public constructor's arguments; unsupported releases are refused."""
    if inp_channels != 3 or out_channels != 3:
        raise ReleasedWeightsError(
            f"{model}: inp_channels={inp_channels}, out_channels={out_channels} is a greyscale or dual-pixel "
            "release; the zoo restores RGB images only (inp_channels=out_channels=3)")
    if dual_pixel_task:
        raise ReleasedWeightsError(f"{model}: dual_pixel_task=True (the dual-pixel defocus release) is not supported")
    if LayerNorm_type not in LAYER_NORMS:
        raise ReleasedWeightsError(f"{model}: LayerNorm_type must be one of {LAYER_NORMS}, got {LayerNorm_type!r}")
    return RestormerConfig(width=dim, blocks=tuple(num_blocks), refinement_blocks=num_refinement_blocks,
                           heads=tuple(heads), ffn_expansion=ffn_expansion_factor, bias=bias,
                           layer_norm=LayerNorm_type)


def diagnose_layer_norm(state: Mapping[str, Tensor], args: dict[str, Any]) -> str | None:
    """Say which LayerNorm the file was trained with when it is not the one asked for."""
    has_norm_bias = any(re.search(r"\.norm\d\.body\.bias$", k) for k in state)
    asked = args.get("LayerNorm_type", "WithBias")
    if not has_norm_bias and asked == "WithBias":
        return "no LayerNorm biases: a bias-free Restormer (denoising release)? pass LayerNorm_type=BiasFree"
    if has_norm_bias and asked == "BiasFree":
        return "the file has LayerNorm biases: pass LayerNorm_type=WithBias"
    return None


def looks_like_restormer(keys: set[str]) -> bool:
    """Restormer keys and none of PromptIR's or HAIR's additions."""
    return "patch_embed.proj.weight" in keys and "latent.0.attn.temperature" in keys and not any(
        k.startswith(("prompt", "noise_level", "reduce_noise")) or ".hyper" in k or "weight_box" in k
        or "kernel_box" in k for k in keys)  # HAIR's net/HAIR.py names its Weight Boxes kernel_box


@register_release("restormer", public_code="swz30/Restormer basicsr/models/archs/restormer_arch.py",
                  rename=trunk_rename, signature=looks_like_restormer, diagnose=diagnose_layer_norm,
                  files=("motion_deblurring.pth", "single_image_defocus_deblurring.pth", "deraining.pth",
                         "real_denoising.pth", "gaussian_color_denoising_blind.pth",
                         "gaussian_color_denoising_sigma15.pth", "gaussian_color_denoising_sigma25.pth",
                         "gaussian_color_denoising_sigma50.pth"))
def restormer_release(*, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                      num_blocks=(4, 6, 6, 8), num_refinement_blocks: int = 4, heads=(1, 2, 4, 8),
                      ffn_expansion_factor: float = 2.66, bias: bool = False, LayerNorm_type: str = "WithBias",
                      dual_pixel_task: bool = False) -> Restormer:
    """Restormer(**public_args); defaults are the public constructor's (the deraining/deblurring releases)."""
    return Restormer(trunk_config(dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor, bias,
                                  LayerNorm_type, inp_channels, out_channels, dual_pixel_task, "restormer"))
