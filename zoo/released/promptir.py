"""PromptIR's released checkpoint (va1shn9v/PromptIR net/model.py, the Lightning ``model.ckpt``).

The trunk is Restormer's, renamed as in zoo/released/restormer.py. Each public prompt level N is
four modules that the zoo keeps in one ``promptN`` block:

- ``promptN.{prompt_param, linear_layer, conv3x3}`` (PromptGenBlock) -> ``promptN.generate.
  {components, weights, conv}``; ``prompt_param`` is stored 1 x len x dim x size x size, the zoo
  keeps len x dim x size x size;
- ``noise_levelN`` (the interaction TransformerBlock) -> ``promptN.interact``;
- ``reduce_noise_levelN`` (its 1x1 convolution) -> ``promptN.reduce``.

The public constructor also builds ``chnl_reduce1/2/3`` and ``reduce_noise_channel_1/2/3``,
which its forward never uses: those six tensors are dropped.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from zoo.promptir import PromptIR, PromptIRConfig
from zoo.released.containers import read_state_dict
from zoo.released.core import RELEASES, ReleasedWeightsError, build_model, load_strict, register_release
from zoo.released.restormer import diagnose_layer_norm, trunk_config, trunk_rename

# Documented as built by the public constructor and unused by its forward (net/model.py).
UNUSED = ("chnl_reduce1.", "chnl_reduce2.", "chnl_reduce3.",
          "reduce_noise_channel_1.", "reduce_noise_channel_2.", "reduce_noise_channel_3.")
PROMPT_PARTS = {"prompt_param": "components", "linear_layer": "weights", "conv3x3": "conv"}
# net/model.py hard-codes the prompt widths (64, 128, 320) and the channel counts around them
# (lin_dim 96/192/384, reduce_chan_level3 input dim*2+192, noise_level3 dim*4+512, ...) for dim 48.
PUBLIC_DIM = 48


def promptir_rename(key: str) -> str | None:
    """A public PromptIR key under the zoo's name; None for the unused 1x1 convolutions."""
    if key.startswith(UNUSED):
        return None
    part = re.match(r"^prompt(\d)\.(prompt_param|linear_layer|conv3x3)(.*)$", key)
    if part:
        return f"prompt{part[1]}.generate.{PROMPT_PARTS[part[2]]}{part[3]}"
    key = re.sub(r"^noise_level(\d)\.", r"prompt\1.interact.", key)
    key = re.sub(r"^reduce_noise_level(\d)\.", r"prompt\1.reduce.", key)
    return trunk_rename(key)


def looks_like_promptir(keys: set[str]) -> bool:
    """Restormer's trunk keys plus PromptIR's prompt-interaction blocks (present with or without decoder)."""
    return "patch_embed.proj.weight" in keys and any(
        k.startswith(("noise_level", "prompt1.prompt_param", "chnl_reduce")) for k in keys)


def _blocks(state: Mapping[str, Tensor], stage: str) -> int:
    indices = {int(m[1]) for k in state if (m := re.match(rf"^{stage}\.(\d+)\.", k))}
    return 1 + max(indices, default=-1)


def diagnose_promptir(state: Mapping[str, Tensor], args: dict[str, Any]) -> str | None:
    """The LayerNorm, block counts or missing prompts that explain a mismatch."""
    hint = diagnose_layer_norm(state, args)
    if hint:
        return hint
    if "prompt1.prompt_param" not in state and "noise_level1.attn.temperature" in state:
        return "the file has no prompt components (built with decoder=False, which the public forward cannot run)"
    defaults = promptir_release.__kwdefaults__
    found = {"num_blocks": [_blocks(state, s) for s in ("encoder_level1", "encoder_level2", "encoder_level3",
                                                          "latent")],
             "num_refinement_blocks": _blocks(state, "refinement")}
    asked = {"num_blocks": list(args.get("num_blocks", defaults["num_blocks"])),
             "num_refinement_blocks": args.get("num_refinement_blocks", defaults["num_refinement_blocks"])}
    differ = {k: v for k, v in found.items() if v != asked[k]}
    if differ:
        return "the file is a PromptIR with " + ", ".join(f"{k}={v}" for k, v in differ.items()) + ": pass those"
    return None


def load_promptir(path: str | Path | None, **public_args: Any) -> PromptIR:
    """Read a PromptIR checkpoint, give its prompt components the zoo's shape, and load it strictly."""
    if path is None:
        raise ReleasedWeightsError("promptir: a weights file is required")
    release = RELEASES.get("promptir")
    state = read_state_dict(path)
    # prompt_param is 1 x len x dim x size x size in net/model.py's PromptGenBlock.
    state = {k: (v[0] if k.endswith(".prompt_param") and v.dim() == 5 and v.shape[0] == 1 else v)
             for k, v in state.items()}
    model = build_model(release, public_args)
    load_strict(release, model, state, public_args, source=Path(path))
    return model


@register_release("promptir", public_code="va1shn9v/PromptIR net/model.py", rename=promptir_rename,
                  signature=looks_like_promptir, diagnose=diagnose_promptir, load=load_promptir,
                  # The all-in-one checkpoint of the authors' README (Google Drive folder "ckpt").
                  files=("model.ckpt",))
def promptir_release(*, inp_channels: int = 3, out_channels: int = 3, dim: int = 48, num_blocks=(4, 6, 6, 8),
                     num_refinement_blocks: int = 4, heads=(1, 2, 4, 8), ffn_expansion_factor: float = 2.66,
                     bias: bool = False, LayerNorm_type: str = "WithBias", decoder: bool = True) -> PromptIR:
    """PromptIR(**public_args); defaults are the released all-in-one model's (the public default decoder=False is not).

    ``decoder=False`` (no prompt blocks) is refused: the public forward then feeds the dim*8
    latent to ``up4_3``, built for dim*4 channels, and fails; no release uses it.
    """
    if not decoder:
        raise ReleasedWeightsError(
            "promptir: decoder=False builds no prompt blocks, and the public forward cannot run without them "
            "(up4_3 takes dim*4 channels, the latent has dim*8); the released model.ckpt uses decoder=True")
    if dim != PUBLIC_DIM:
        raise ReleasedWeightsError(
            f"promptir: dim={dim}; net/model.py hard-codes its prompt channel counts for dim={PUBLIC_DIM}")
    if bias:
        raise ReleasedWeightsError(
            "promptir: bias=True; net/model.py then still builds its patch embedding and resizing convolutions "
            "without bias, which the zoo cannot express (the release uses bias=False)")
    trunk = trunk_config(dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor, bias, LayerNorm_type,
                         inp_channels, out_channels, False, "promptir")
    # The interaction blocks use heads[2] at every level (net/model.py noise_level1/2/3).
    return PromptIR(PromptIRConfig(trunk=trunk, interaction_heads=trunk.heads[2]))


# The loader takes the builder's public arguments (Release.public_defaults reads this signature).
load_promptir.__signature__ = inspect.Signature(
    [inspect.Parameter("path", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + list(inspect.signature(promptir_release).parameters.values()))
