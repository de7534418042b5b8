"""Efficiency columns of a reproduced run: parameters and MACs, measured or counted.

A run may record measured figures as metrics or params named `efficiency.params` and
`efficiency.macs` (`/` as separator works too; `efficiency.gmacs` is read as 1e9 MACs). Without
a recorded parameter count, the zoo counts the parameters of the run's model configuration (read
from the zoo catalogue's cache when the run changed no model option, so no torch is imported; built
on the meta device otherwise); MACs are only shown when the run measured them.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import yaml


def _recorded(name: str, params: dict[str, str], metrics: dict[str, float]) -> float | None:
    for key in (f"efficiency.{name}", f"efficiency/{name}"):
        for source in (metrics, params):
            if key in source:
                try:
                    value = float(source[key])
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    return value
    return None


@functools.lru_cache(maxsize=256)
def _zoo_count(model: str, variant: str, overrides: tuple[tuple[str, Any], ...]) -> int | None:
    """The zoo's count for a configuration: from the catalogue's cache when unchanged, else built (needs torch)."""
    from harness.public import default_parameter_count

    if not overrides:
        return default_parameter_count(model, variant)
    from zoo import parameter_count

    try:
        return int(parameter_count(model, variant, **dict(overrides)))
    except Exception:  # an override the zoo cannot rebuild: count unknown
        return None


def _overrides(model: str, variant: str, params: dict[str, str]) -> tuple[tuple[str, Any], ...] | None:
    """The run's model options that differ from the zoo's configuration (None when unreadable)."""
    from harness.public import default_config

    default = default_config(model, variant)
    if default is None:
        return None
    changed = []
    for key, value in params.items():
        if not key.startswith("model."):
            continue
        field = key[len("model."):]
        if field in default and default[field] != value:
            try:
                changed.append((field, yaml.safe_load(value)))
            except yaml.YAMLError:
                return None
    return tuple(sorted(changed))


def run_efficiency(model: str | None, variant: str | None, params: dict[str, str], metrics: dict[str, float]) -> dict[str, Any]:
    """{'params', 'params_source', 'macs', 'macs_input', 'latency_ms'} of a run: recorded, else counted by the zoo.

    `macs_input` is the input the run measured MACs and latency at (param `efficiency.input_size`).
    """
    count = _recorded("params", params, metrics)
    macs = _recorded("macs", params, metrics)
    if macs is None:
        gmacs = _recorded("gmacs", params, metrics)
        macs = None if gmacs is None else gmacs * 1e9
    source = "run" if count is not None else None
    if count is None and model and variant:
        overrides = _overrides(model, variant, params)
        if overrides is not None:
            count = _zoo_count(model, variant, overrides)
            source = "zoo" if count is not None else None
    return {"params": None if count is None else int(count), "params_source": source, "macs": macs,
            "macs_input": params.get("efficiency.input_size"), "latency_ms": _recorded("latency_ms", params, metrics)}
