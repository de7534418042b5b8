"""Model zoo: restoration networks as plain PyTorch modules (no Ray, no MLflow).

The public names below are loaded on first use (PEP 562), so that `zoo.registry` — which the
harness' settings and command line use — can be imported without importing torch; asking for any
of them imports the factory and every model module, which registers the models.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the submodule that defines it
_EXPORTS = {
    "Conditioning": "zoo.contract",
    "LossTerms": "zoo.contract",
    "RestorationModel": "zoo.contract",
    "TrainingStage": "zoo.contract",
    "MODELS": "zoo.factory",
    "ModelSpec": "zoo.factory",
    "create_model": "zoo.factory",
    "list_models": "zoo.factory",
    "model_config": "zoo.factory",
    "parameter_count": "zoo.factory",
    "register_model": "zoo.factory",
    "Registry": "zoo.registry",
    "load_released": "zoo.released",
    "RELEASES": "zoo.released",
    "ReleasedWeightsError": "zoo.released",
    "CheckpointReadError": "zoo.released",
    "UnknownNameError": "zoo.registry",
}
# Importing a model module registers it.
MODEL_MODULES = ("hair_hosts", "hyperres", "identity", "nafnet", "promptir", "restormer", "airnet", "daair", "ads")

__all__ = sorted(_EXPORTS)


def load_models() -> None:
    """Import every model module, then the installed plug-ins (entry-point group restoration_bench.models)."""
    for name in MODEL_MODULES:
        importlib.import_module(f"zoo.{name}")
    importlib.import_module("zoo.plugins").load_entry_points()


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute '{name}'")
    if _EXPORTS[name] != "zoo.registry":
        load_models()
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
