"""Benchmark data: degradations, and test pairs and training samples for a setting, from disk or embedded.

May import harness.settings; knows nothing of scoring, runs, Ray or MLflow.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.source import DataSource, TestPair, TrainSample
from harness.settings import Setting


def open_data(setting: Setting, data_root: str | Path | None = None) -> DataSource:
    """The data for `setting`: real datasets under `data_root`, or the embedded suite when None."""
    if data_root is None:
        from harness.data.embedded import EmbeddedSuite

        return EmbeddedSuite(setting)
    from harness.data.real import RealData

    return RealData(setting, data_root)


__all__ = ["DataSource", "TestPair", "TrainSample", "open_data"]
