"""Benchmark data: degradations, and test pairs and training samples for a setting, from disk or embedded.

May import harness.settings; knows nothing of scoring, runs, Ray or MLflow. The data types are
loaded on first use (PEP 562), so that `harness.data.tree` and `harness.data.layouts` (what
`harness data layout|check` use) import without torch.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.data.source import DataSource
    from harness.settings import Setting

_SOURCE_TYPES = ("DataSource", "TestPair", "TrainSample")


def open_data(setting: Setting, data_root: str | Path | None = None) -> DataSource:
    """The data for `setting`: real datasets under `data_root`, or the embedded suite when None."""
    if data_root is None:
        from harness.data.embedded import EmbeddedSuite

        return EmbeddedSuite(setting)
    from harness.data.real import RealData

    return RealData(setting, data_root)


def __getattr__(name: str) -> Any:
    if name not in _SOURCE_TYPES:
        raise AttributeError(f"module 'harness.data' has no attribute '{name}'")
    return getattr(importlib.import_module("harness.data.source"), name)


__all__ = ["DataSource", "TestPair", "TrainSample", "open_data"]
