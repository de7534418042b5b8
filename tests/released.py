"""Released-checkpoint fixtures: the fill rule of tests/fixtures/released/README.md and its I/O.

Each fixture folder describes one architecture as its authors released it (keys, shapes,
container, constructor arguments) and holds what their public code outputs when every tensor
has the value the fill rule gives; these helpers rebuild that checkpoint without shipping it.
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FIXTURES = Path(__file__).parent / "fixtures" / "released"
FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "meta.json").is_file())


def meta(folder: str) -> dict:
    """The folder's meta.json: public code, constructor arguments, tensors, container, fill rule."""
    return json.loads((FIXTURES / folder / "meta.json").read_text())


def fill_tensor(key: str, shape: list[int], dtype: str, rule: dict) -> torch.Tensor:
    """The value the fill rule gives tensor `key` of `shape` (computed in float64, cast to float32)."""
    n = math.prod(shape)
    if not dtype.startswith("float"):
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    h = zlib.crc32(key.encode())
    i = np.arange(n, dtype=np.float64)
    v = np.sin(i * (0.5 + (h % 1009) / 1009) + (h % 6283) / 1000)
    generated = rule.get("generated_fan_in", {})
    suffix = next((s for s in generated if key.endswith(s)), None)
    if "running_var" in key:
        value = 1 + 0.25 * (v + 1)
    elif "running_mean" in key:
        value = 0.1 * v
    elif suffix is not None:
        value = v * math.sqrt(2 / generated[suffix])
    elif n == max(shape, default=1):  # vector-like
        value = 1 + 0.1 * v if key.endswith("weight") or "temperature" in key else 0.1 * v
    else:
        value = rule["gain"] * v * math.sqrt(2 / (n / shape[0]))
    return torch.from_numpy(value.reshape(shape)).to(torch.float32)


def released_state(folder: str) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's released state_dict, in order, filled by the fill rule."""
    info = meta(folder)
    return {key: fill_tensor(key, shape, dtype, info["fill_rule"]) for key, shape, dtype in info["tensors"]}


def write_released(folder: str, path: Path, container: str | None = None) -> Path:
    """Write the folder's checkpoint to `path` in its released container (or in `container`)."""
    state = released_state(folder)
    kind = container or container_of(folder)
    if kind == "basicsr":
        torch.save({"params": state}, path)
    elif kind == "lightning":
        torch.save({"epoch": 3, "global_step": 100, "state_dict": {f"net.{k}": v for k, v in state.items()}}, path)
    elif kind == "state_dict":
        torch.save({"state_dict": state}, path)
    elif kind == "plain":
        torch.save(state, path)
    elif kind == "safetensors":
        save_file(state, str(path))
    else:
        raise ValueError(f"unknown container {kind!r}")
    return path


def container_of(folder: str) -> str:
    """The container the authors release this checkpoint in: basicsr, lightning, state_dict or plain."""
    text = meta(folder)["container"]
    if text.startswith("BasicSR"):
        return "basicsr"
    if text.startswith("PyTorch Lightning"):
        return "lightning"
    if text.startswith("{'state_dict'"):
        return "state_dict"
    if text.startswith("plain"):
        return "plain"
    raise ValueError(f"fixture {folder}: unknown container description {text!r}")


def inputs_and_output(folder: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The inputs (input0, input1, ...) and the public code's output for the fixture."""
    io = load_file(str(FIXTURES / folder / "io.safetensors"))
    inputs = [io[f"input{k}"] for k in range(len(io) - 1)]
    return inputs, io["output"]


def tolerance(output: torch.Tensor) -> float:
    """The README's bound: 1e-4 * max(1, max|output|)."""
    return 1e-4 * max(1.0, output.abs().max().item())
