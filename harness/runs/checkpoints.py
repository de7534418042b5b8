"""Checkpoints that never unpickle: weights in safetensors, optimiser state via weights_only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS, OPTIMIZER, STATE = "model.safetensors", "optimizer.pt", "trainer_state.json"


def save_weights(model: nn.Module, path: Path) -> None:
    """Write the model's state dict as safetensors (shared tensors are cloned apart)."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into `model`, naming the file if keys do not match."""
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit this model: {err}") from err


def save_checkpoint(
    directory: Path, model: nn.Module, optimizer_state: dict[str, Any] | None, state: dict[str, Any]
) -> None:
    """Write a full resume point (weights, optimiser state, trainer state) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(model, directory / WEIGHTS)
    if optimizer_state is not None:
        torch.save(optimizer_state, directory / OPTIMIZER)
    (directory / STATE).write_text(json.dumps(state))


def load_checkpoint(directory: Path, model: nn.Module) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load weights into `model`; return (trainer state, optimiser state dict or None)."""
    load_weights(model, directory / WEIGHTS)
    optimizer_file = directory / OPTIMIZER
    optimizer_state = torch.load(optimizer_file, weights_only=True) if optimizer_file.exists() else None
    return json.loads((directory / STATE).read_text()), optimizer_state
