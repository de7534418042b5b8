"""HyperRes' released checkpoints (ifryed/HyperRes): a main network and, apart, its level estimator.

The authors publish ``noise_4.pth``, ``sr_4.pth`` and ``jpeg_4_color.pth`` as ``{'state_dict': ...}``
(models/HyperRes.py) and the estimator ``noise_detect.pth`` as a plain state_dict
(models/NoiseNet.py), so loading reads up to two files:
``load_released("hyperres", main_path, estimator=estimator_path, meta_blocks=16, gray=False)``;
either path may be None, and the part it would fill keeps its initialisation.

Main network keys (models/HyperRes.py): ``conv1.module`` is the stride-2 head, ``res_blocks_meta.0``
is an ``nn.Identity`` so the meta blocks are ``res_blocks_meta.1`` .. ``.meta_blocks``,
``conv2.module`` the convolution before the long skip, ``conv3``/``conv4``/``conv5`` the tail
around the pixel shuffle. Each ``hy_convK.fc`` is ``nn.Linear(1, 64 x (64 x 9 + 1))`` of the level:
its weight column is the slope and its bias the base of the kernel (first 36,864 entries, C
order) and of the conv bias (last 64), which the zoo's MetaConv2d holds as (slope, base).
Levels go in at restore time as ``Conditioning(level=sigma / 255)``: the public forward divides
levels >= 1 by ``norm_factor`` 255, super-resolution scales included (x4 -> 4 / 255).

Estimator keys keep their public names under ``estimator.``; its last layer regresses sigma on
the 0-255 scale where the zoo's regresses sigma / 255, so that layer is divided by 255 on loading.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor, nn

from zoo.hyperres import HyperRes, HyperResConfig, NoiseNet
from zoo.released.containers import read_state_dict
from zoo.released.core import RELEASES, ReleasedWeightsError, load_strict, register_release

WIDTH = 64  # inplanes = outplanes = 64 in the public HyperRes
MAIN_RENAMES = {"conv1": "head", "conv2": "body_end", "conv3": "tail.0", "conv4": "tail.3", "conv5": "tail.5"}
ESTIMATOR_LAST = "fc_seq.4."  # the public NoiseNet's Linear(16, 1)
# A generator tensor is split on loading into its kernel part and its conv-bias part; these
# suffixes name the halves (the slope/base roles follow from fc.weight vs fc.bias).
KERNEL, BIAS = "[kernel]", "[bias]"
GENERATED = re.compile(r"^res_blocks_meta\.(\d+)\.hy_conv([12])\.fc\.(weight|bias)(\[kernel\]|\[bias\])$")


def rename(key: str) -> str | None:
    """A public key (main network, with generators split, or NoiseNet) under the zoo's name."""
    match = GENERATED.match(key)
    if match:
        block, conv, role, part = match.groups()
        kind = "slope" if role == "weight" else "base"
        return f"blocks.{int(block) - 1}.conv{conv}.{kind}_{'weight' if part == KERNEL else 'bias'}"
    match = re.match(r"^(conv[1-5])\.module\.(weight|bias)$", key)
    if match:
        return f"{MAIN_RENAMES[match.group(1)]}.{match.group(2)}"
    return key  # NoiseNet keys are the zoo's (loaded under the prefix "estimator.")


def split_generators(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Each ``hy_convK.fc`` tensor of out x (in x 9 + 1) entries cut into its kernel and bias parts."""
    split: dict[str, Tensor] = {}
    for key, tensor in state.items():
        if re.search(r"\.hy_conv[12]\.fc\.(weight|bias)$", key):
            flat = tensor.reshape(-1)
            out_channels = _generated_channels(flat.numel())
            if out_channels is None:
                split[key] = tensor  # an odd size: left whole, so the strict loader names it
                continue
            kernel = out_channels * out_channels * 9
            split[key + KERNEL] = flat[:kernel].reshape(out_channels, out_channels, 3, 3)
            split[key + BIAS] = flat[kernel:]
        else:
            split[key] = tensor
    return split


def _generated_channels(numel: int) -> int | None:
    """c such that c x (c x 9 + 1) == numel (square 3x3 generated convolutions), if any."""
    c = round((numel / 9) ** 0.5)
    return c if c * (c * 9 + 1) == numel else None


def estimator_units(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The public NoiseNet state with its last layer turned from sigma (0-255) into sigma / 255."""
    return {k: v / NoiseNet.sigma_scale if k.startswith(ESTIMATOR_LAST) else v for k, v in state.items()}


def looks_like_noisenet(keys: set[str]) -> bool:
    """The authors' level estimator (models/NoiseNet.py), e.g. noise_detect.pth."""
    return "conv_seq.0.conv1.weight" in keys and "fc_seq.0.weight" in keys


def looks_like_main(keys: set[str]) -> bool:
    """A HyperRes main network (noise_4.pth, sr_4.pth, jpeg_4_color.pth)."""
    return "conv1.module.weight" in keys and any(k.startswith("res_blocks_meta.") for k in keys)


def looks_like_hyperres(keys: set[str]) -> bool:
    """Either of HyperRes' released files."""
    return looks_like_main(keys) or looks_like_noisenet(keys)


def diagnose(state: Mapping[str, Tensor], args: dict[str, Any]) -> str | None:
    """Name the meta_blocks or colour setting the file was released with when it is not the one asked for."""
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"^res_blocks_meta\.(\d+)\.", k))}
    if blocks and max(blocks) != args.get("meta_blocks", 16):
        return f"the file has {max(blocks)} meta blocks: pass meta_blocks={max(blocks)}"
    head = state.get("conv1.module.weight")
    if head is not None and head.dim() == 4 and head.shape[1] == 1:
        return "a greyscale release (gray=True): the zoo restores RGB images only"
    return None


class MainNetwork(nn.Module):
    """The main network's modules of a HyperRes (shared, not copied): what a main file fills."""

    def __init__(self, model: HyperRes):
        super().__init__()
        self.head, self.blocks, self.body_end, self.tail = model.head, model.blocks, model.body_end, model.tail


def load_hyperres(path: str | Path | None, *, estimator: str | Path | None = None, meta_blocks: int = 16,
                  gray: bool = False, level=None, norm_factor: float = 255, **other: Any) -> HyperRes:
    """A zoo HyperRes with the authors' main network from `path` and their NoiseNet from `estimator`.

    `level` and `norm_factor` are accepted as the public constructor has them, and change nothing:
    the zoo takes the level at each call, ``Conditioning(level=sigma / 255)``.
    """
    args = {"estimator": estimator, "meta_blocks": meta_blocks, "gray": gray}
    if other:
        raise ReleasedWeightsError(f"hyperres: unknown public argument(s) {sorted(other)}; ifryed/HyperRes "
                                   f"is loaded with {sorted([*args, 'level', 'norm_factor'])}")
    if norm_factor != 255:
        raise ReleasedWeightsError(
            f"hyperres: norm_factor={norm_factor} is not supported: the released models divide levels by 255 "
            "(models/HyperRes.py), and the zoo's Conditioning.level is sigma / 255")
    if path is None and estimator is None:
        raise ReleasedWeightsError("hyperres: give a main network file, an estimator= file, or both")
    model = hyperres_release(meta_blocks=meta_blocks, gray=gray)
    release = RELEASES.get("hyperres")
    if path is not None:
        state = read_state_dict(path)
        if looks_like_noisenet(set(state)):
            raise ReleasedWeightsError(
                f"{path} is HyperRes' level estimator (NoiseNet, e.g. noise_detect.pth), not a main network: "
                "pass it as estimator= (--estimator-weights), with the main network's file as the weights")
        load_strict(release, MainNetwork(model), split_generators(state), args, source=Path(path))
    if estimator is not None:
        state = read_state_dict(estimator)
        if looks_like_main(set(state)):
            raise ReleasedWeightsError(
                f"{estimator} is a HyperRes main network, not the level estimator: pass it as the weights "
                "file and the NoiseNet file (noise_detect.pth) as estimator=")
        load_strict(release, model, estimator_units(state), args, source=Path(estimator), prefix="estimator.")
    return model


@register_release("hyperres", public_code="ifryed/HyperRes models/HyperRes.py", rename=rename,
                  signature=looks_like_hyperres, diagnose=diagnose, load=load_hyperres,
                  files=("noise_4.pth", "sr_4.pth", "jpeg_4_color.pth", "noise_detect.pth"))
def hyperres_release(*, meta_blocks: int = 16, gray: bool = False) -> HyperRes:
    """HyperRes(meta_blocks, gray) at the public width 64 with the 64-wide NoiseNet; gray=True is refused."""
    if gray:
        raise ReleasedWeightsError(
            "hyperres: gray=True is a greyscale release (one input and output channel); the zoo restores RGB "
            "images only: use a colour release (noise_4.pth, sr_4.pth, jpeg_4_color.pth) with gray=False")
    return HyperRes(HyperResConfig(width=WIDTH, blocks=meta_blocks, estimator_width=WIDTH))
