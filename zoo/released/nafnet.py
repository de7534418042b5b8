"""NAFNet's released checkpoints (megvii-research/NAFNet), plain and with the test-time local converter.

The public ``NAFNet`` (basicsr/models/archs/NAFNet_arch.py) has the zoo's module tree except one
name: its middle stage is ``middle_blks``, the zoo's ``middle``; its dropouts are identities with
no tensors. ``NAFNetLocal`` (same file, with local_arch.py) has the same keys: it only swaps the
channel attention's global pooling for a local one at test time, which ``zoo.nafnet.to_local``
does. The authors evaluate GoPro and REDS that way (options/test/GoPro/NAFNet-width64.yml,
options/test/REDS/NAFNet-width64.yml: ``type: NAFNetLocal``), so those need ``train_size``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from zoo.nafnet import NAFNet, NAFNetConfig, to_local
from zoo.released.core import ReleasedWeightsError, register_release

# NAFNetLocal's default crop (NAFNet_arch.py); the GoPro/REDS test options keep it.
LOCAL_TRAIN_SIZE = (1, 3, 256, 256)


def nafnet_rename(key: str) -> str:
    """A public NAFNet key under the zoo's name (only the middle stage is named differently)."""
    return re.sub(r"^middle_blks\.", "middle.", key)


def looks_like_nafnet(keys: set[str]) -> bool:
    """NAFNet's stem, tail and NAFBlock gains (beta/gamma) in its encoder stages."""
    return "intro.weight" in keys and "ending.weight" in keys and any(
        k.startswith("encoders.") and k.endswith(".beta") for k in keys)


def released_architecture(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """The public constructor arguments a NAFNet state_dict was built with, read from its keys and shapes."""

    def stage_counts(prefix: str) -> list[int]:
        counts: dict[int, int] = {}
        for key in state:
            found = re.match(rf"^{prefix}\.(\d+)\.(\d+)\.", key)
            if found:
                stage, block = int(found[1]), int(found[2])
                counts[stage] = max(counts.get(stage, 0), block + 1)
        return [counts.get(i, 0) for i in range(1 + max(counts, default=-1))]

    middle = {int(m[1]) for k in state if (m := re.match(r"^middle_blks\.(\d+)\.", k))}
    found: dict[str, Any] = {}
    if "intro.weight" in state:
        found["img_channel"] = int(state["intro.weight"].shape[1])
        found["width"] = int(state["intro.weight"].shape[0])
    found["enc_blk_nums"] = stage_counts("encoders")
    found["middle_blk_num"] = 1 + max(middle, default=-1)
    found["dec_blk_nums"] = stage_counts("decoders")
    return found


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def diagnose_nafnet(state: Mapping[str, Tensor], args: dict[str, Any]) -> str | None:
    """Name the width, block counts or channels the file was built with when they differ from `args`."""
    if not looks_like_nafnet(set(state)):
        return None
    found = released_architecture(state)
    defaults = nafnet_release.__kwdefaults__
    differ = {k: v for k, v in found.items() if _as_list(v) != _as_list(args.get(k, defaults[k]))}
    if not differ:
        return None
    if differ.get("img_channel", 3) != 3:
        return f"a NAFNet with img_channel={found['img_channel']} (greyscale?); the zoo restores RGB only"
    return "the file is a NAFNet with " + ", ".join(f"{k}={v}" for k, v in differ.items()) + ": pass those"


@register_release(
    "nafnet", public_code="megvii-research/NAFNet basicsr/models/archs/NAFNet_arch.py (NAFNetLocal: + local_arch.py)",
    rename=nafnet_rename, signature=looks_like_nafnet, diagnose=diagnose_nafnet,
    # The authors' README model zoo (NAFNet rows; the Baseline and NAFSSR rows are other architectures).
    files=("NAFNet-GoPro-width32.pth", "NAFNet-GoPro-width64.pth", "NAFNet-SIDD-width32.pth",
           "NAFNet-SIDD-width64.pth", "NAFNet-REDS-width64.pth"))
def nafnet_release(*, img_channel: int = 3, width: int = 64, middle_blk_num: int = 1,
                   enc_blk_nums=(1, 1, 1, 28), dec_blk_nums=(1, 1, 1, 1), train_size=None,
                   fast_imp: bool = False) -> NAFNet:
    """NAFNet(**public_args), or NAFNetLocal when `train_size` (or `fast_imp`) is given; defaults: GoPro width 64.

    The defaults are options/test/GoPro/NAFNet-width64.yml's; the authors evaluate that release as
    NAFNetLocal with train_size=[1, 3, 256, 256] (NAFNetLocal's default), so pass it to reproduce them.
    """
    if img_channel != 3:
        raise ReleasedWeightsError(
            f"nafnet: img_channel={img_channel} is not an RGB release; "
            "the zoo restores RGB images only (img_channel=3)")
    model = NAFNet(NAFNetConfig(width=width, encoder_blocks=tuple(enc_blk_nums), middle_blocks=middle_blk_num,
                                decoder_blocks=tuple(dec_blk_nums)))
    if train_size is not None or fast_imp:
        size = tuple(LOCAL_TRAIN_SIZE if train_size is None else train_size)
        if len(size) != 4:
            raise ReleasedWeightsError(f"nafnet: train_size is (N, C, H, W) as in NAFNetLocal, got {list(size)}")
        to_local(model, size, fast_imp=bool(fast_imp))
    return model
