"""HAIR's released checkpoints (toummHus/HAIR, net/HAIR.py) into the ``res_hair`` "code" layout.

The authors release a PyTorch Lightning checkpoint (``hair3d.ckpt``, loaded by their test.py and
very_simple_demo.py) whose ``net.``-prefixed keys are those of net/HAIR.py's ``HAIR``. Besides
Restormer's trunk names (zoo/released/restormer.py), the mapping renames each hyper level's
``kernel_box`` (the zoo's ``weight_box``), its selecting MLPs ``extracts.i.net`` (``selectors.i.mlp``)
and the ResNet feature extractor ``feature`` (the zoo's ``dac``).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from torch import Tensor

from zoo.hair_code import HairCode, HairCodeConfig
from zoo.released.core import register_release
from zoo.released.restormer import diagnose_layer_norm, trunk_config, trunk_rename

HAIR_RENAMES = [
    (r"^feature\.", "dac."),
    (r"\.kernel_box$", ".weight_box"),
    (r"\.extracts\.(\d+)\.net\.", r".selectors.\1.mlp."),
]
DEFAULTS = {"dim": 48, "num_blocks": [4, 6, 6, 8], "num_refinement_blocks": 4}  # net/HAIR.py HAIR.__init__


def hair_rename(key: str) -> str:
    """A public HAIR key under the zoo's name."""
    for pattern, replacement in HAIR_RENAMES:
        key = re.sub(pattern, replacement, key)
    return trunk_rename(key)


def looks_like_hair(keys: set[str]) -> bool:
    """Restormer's patch embedding plus HAIR's Weight Boxes and ResNet feature extractor."""
    return "patch_embed.proj.weight" in keys and "feature.conv_in.weight" in keys and any(
        k.endswith(".kernel_box") for k in keys)


def saved_arguments(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """The width and block counts a HAIR state_dict was built with, read from its keys and shapes."""

    def count(pattern: str) -> int:
        return len({m.group(1) for k in state for m in [re.match(pattern, k)] if m})

    found: dict[str, Any] = {}
    if "patch_embed.proj.weight" in state:
        found["dim"] = int(state["patch_embed.proj.weight"].shape[0])
    found["num_blocks"] = [count(rf"^encoder_level{i}\.(\d+)\.") for i in (1, 2, 3)] + [
        count(r"^latent\.blocks\.(\d+)\.")]
    found["num_refinement_blocks"] = count(r"^refinement\.blocks\.(\d+)\.")
    return found


def diagnose_hair(state: Mapping[str, Tensor], args: dict[str, Any]) -> str | None:
    """Name the width or block counts the file was saved with when they are not the ones asked for."""
    asked = {k: list(v) if k == "num_blocks" else v for k, v in {**DEFAULTS, **args}.items()}
    differ = {k: v for k, v in saved_arguments(state).items() if asked[k] != v}
    if differ:
        return "the file was saved with " + ", ".join(f"{k}={v}" for k, v in differ.items()) + ": pass those"
    return diagnose_layer_norm(state, args)


@register_release("res_hair", public_code="toummHus/HAIR net/HAIR.py", rename=hair_rename,
                  signature=looks_like_hair, diagnose=diagnose_hair,
                  # the all-in-one (3 degradations) checkpoint their test.py and very_simple_demo.py load
                  files=("hair3d.ckpt",))
def res_hair_release(*, inp_channels: int = 3, out_channels: int = 3, dim: int = 48, num_blocks=(4, 6, 6, 8),
                     num_refinement_blocks: int = 4, heads=(1, 2, 4, 8), ffn_expansion_factor: float = 2.66,
                     bias: bool = False, LayerNorm_type: str = "WithBias") -> HairCode:
    """HAIR(**public_args) as net/HAIR.py builds it; defaults are its constructor's (the hair3d release)."""
    host = trunk_config(dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor, bias, LayerNorm_type,
                        inp_channels, out_channels, False, "res_hair")
    return HairCode(HairCodeConfig(host=host))
