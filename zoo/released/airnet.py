"""AirNet's released checkpoints (XLearning-SCU/2022-CVPR-AirNet): All.pth, Denoise.pth, Derain.pth, Dehaze.pth.

The public ``AirNet(opt)`` (net/model.py) holds the restorer as ``R`` (net/DGRN.py) and the
encoder as ``E``, a CBDE whose only child ``E`` is a MoCo wrapper (net/encoder.py, net/moco.py):
query and key encoders ``E.E.encoder_q`` / ``E.E.encoder_k`` and the buffers ``E.E.queue``
(256 x K, one key per column) and ``E.E.queue_ptr``. The checkpoints are plain state_dicts
(test.py loads them with ``net.load_state_dict(torch.load(path))``). The zoo's AirNet computes
the same function; only the module names differ, so renaming keys is all the mapping needs.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from torch import Tensor

from zoo.airnet import AirNet, AirNetConfig
from zoo.released.core import ReleasedWeightsError, register_release

# CBDE builds MoCo with dim=256 and K = opt.batch_size * 256 (net/encoder.py).
QUEUE_PER_BATCH = 256
# test.py sets opt.batch_size per release: Denoise.pth 3, Derain.pth 1, Dehaze.pth 1, All.pth 5
# (option.py: len(de_type), the five all-in-one degradations).
RELEASE_BATCH_SIZES = {"All.pth": 5, "Denoise.pth": 3, "Derain.pth": 1, "Dehaze.pth": 1}

# (pattern, replacement) tried in order; the first match renames the key. Inside a DGRN group
# ``body`` (net/DGRN.py, DGG) the blocks come first and a bare convolution last, and the same
# holds for the group list ``R.body`` itself: a key ``<index>.weight|bias`` with no sub-module
# is that trailing convolution, whatever the number of blocks or groups.
RENAMES = [
    (r"^R\.head\.0\.", "restorer.head."),
    (r"^R\.tail\.0\.", "restorer.tail."),
    (r"^R\.body\.(\d+)\.body\.(\d+)\.(weight|bias)$", r"restorer.groups.\1.conv.\3"),
    (r"^R\.body\.(\d+)\.(weight|bias)$", r"restorer.body_end.\2"),
    (r"^R\.body\.(\d+)\.body\.(\d+)\.", r"restorer.groups.\1.blocks.\2."),
    (r"^E\.E\.queue$", "queue"),
    (r"^E\.E\.queue_ptr$", "queue_position"),
    (r"^E\.E\.encoder_q\.", "encoder."),
    (r"^E\.E\.encoder_k\.", "key_encoder."),
]
# Names inside a block (DGB -> DGM -> DCN_layer / SFT_layer) and inside the encoder (ResEncoder).
INNER_RENAMES = [
    (r"\.dgm(\d)\.", r".guide\1."),
    (r"\.dcn\.conv_offset_mask\.", ".dcn.offset_mask."),
    (r"\.sft\.conv_(gamma|beta)\.", r".sft.\1."),
    (r"\.backbone\.", ".body."),
    (r"^(encoder|key_encoder)\.E_pre\.", r"\1.condition."),
    (r"^(encoder|key_encoder)\.E\.", r"\1.features."),
]


def airnet_rename(key: str) -> str:
    """A public AirNet key under the zoo's name (an unknown key keeps its name and is refused)."""
    for pattern, replacement in RENAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            key = renamed
            break
    for pattern, replacement in INNER_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def looks_like_airnet(keys: set[str]) -> bool:
    """The public AirNet's restorer head and its MoCo queue."""
    return "R.head.0.weight" in keys and "E.E.queue" in keys


def diagnose_queue(state: Mapping[str, Tensor], args: dict[str, Any]) -> str | None:
    """Name the batch_size the file's MoCo queue was built with when it is not the one passed."""
    queue = state.get("E.E.queue")
    if queue is None or queue.dim() != 2:
        return None
    batch_size = args.get("batch_size", 5)
    length = queue.shape[1]
    if length == QUEUE_PER_BATCH * batch_size:
        return None
    releases = ", ".join(f"{name} {size}" for name, size in RELEASE_BATCH_SIZES.items())
    fix = (f"pass batch_size={length // QUEUE_PER_BATCH}" if length % QUEUE_PER_BATCH == 0
           else "no batch_size gives it")
    return (f"the file's MoCo queue holds {length} keys but batch_size={batch_size} builds "
            f"{QUEUE_PER_BATCH} x {batch_size} = {QUEUE_PER_BATCH * batch_size}: {fix} "
            f"(the authors' test.py uses {releases})")


@register_release("airnet", public_code="XLearning-SCU/2022-CVPR-AirNet net/model.py", rename=airnet_rename,
                  signature=looks_like_airnet, diagnose=diagnose_queue, files=tuple(RELEASE_BATCH_SIZES))
def airnet_release(*, batch_size: int = 5) -> AirNet:
    """AirNet(opt) for the public ``opt.batch_size`` (MoCo queue 256 x batch_size); default 5, All.pth."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ReleasedWeightsError(f"airnet: batch_size must be a positive integer, got {batch_size!r}")
    # Widths, depths, momentum and temperature are fixed in the public code; the zoo's paper
    # configuration has the same ones (net/DGRN.py, net/encoder.py, net/moco.py).
    return AirNet(dataclasses.replace(AirNetConfig(), queue=QUEUE_PER_BATCH * batch_size))
