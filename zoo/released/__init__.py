"""Released checkpoints: the authors' published weights loaded into zoo models, strictly and safely.

``load_released(name, path, **public_args)`` reads any of the authors' containers without running
code from the file, builds the zoo model from the authors' own constructor arguments, renames
their keys and refuses any mismatch with the likely cause.
"""
from __future__ import annotations

import importlib

from zoo.released.containers import CheckpointReadError, read_state_dict
from zoo.released.core import RELEASES, Release, ReleasedWeightsError, load_released, register_release

# Importing an adapter module registers its releases.
ADAPTER_MODULES = ("restormer", "airnet", "promptir", "nafnet", "hair", "hyperres")
for _module in ADAPTER_MODULES:
    importlib.import_module(f"zoo.released.{_module}")

__all__ = ["CheckpointReadError", "RELEASES", "Release", "ReleasedWeightsError", "load_released",
           "read_state_dict", "register_release"]
