"""The model registry and the one entry point that builds any zoo model."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from zoo.contract import RestorationModel
from zoo.registry import Registry, UnknownNameError

VARIANTS = ("paper", "tiny")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, its named configurations and where they come from."""

    name: str
    build: Callable[[Any], RestorationModel]
    configs: dict[str, Any]
    summary: str
    source: str


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(*, configs: dict[str, Any], summary: str, source: str, name: str | None = None):
    """Decorator for a builder ``config -> RestorationModel``; the function name is the model name."""

    def wrap(build: Callable[[Any], RestorationModel]):
        missing = set(VARIANTS) - set(configs)
        if missing:
            raise ValueError(f"model '{name or build.__name__}' lacks variants {sorted(missing)}")
        key = name or build.__name__
        MODELS.add(key, ModelSpec(key, build, dict(configs), summary, source))
        return build

    return wrap


def model_config(name: str, variant: str = "paper", **overrides: Any) -> Any:
    """The configuration dataclass of `name`/`variant` with `overrides` applied."""
    spec = MODELS.get(name)
    if variant not in spec.configs:
        raise UnknownNameError(f"variant of '{name}'", variant, sorted(spec.configs))
    config = spec.configs[variant]
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"model '{name}' has no option(s) {unknown}; its options are: {sorted(fields) or 'none'}"
        )
    return dataclasses.replace(config, **overrides)


def create_model(name: str, variant: str = "paper", **overrides: Any) -> RestorationModel:
    """Build model `name` in configuration `variant` ("paper" or "tiny"), with field overrides."""
    return MODELS.get(name).build(model_config(name, variant, **overrides))


def parameter_count(name: str, variant: str = "paper", **overrides: Any) -> int:
    """Number of parameters of a model, counted on the meta device (allocates nothing)."""
    with torch.device("meta"):
        model = create_model(name, variant, **overrides)
    return sum(p.numel() for p in model.parameters())


def list_models() -> list[str]:
    """Names of every registered model."""
    return MODELS.names()
