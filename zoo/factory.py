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


def _replace(config: Any, overrides: dict[str, Any], owner: str) -> Any:
    """`dataclasses.replace` that also takes dotted keys for nested configs ("host.width")."""
    fields = {f.name for f in dataclasses.fields(config)}
    direct, nested = {}, {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if head not in fields or (dot and not dataclasses.is_dataclass(getattr(config, head))):
            options = sorted(_option_names(config))
            raise ValueError(f"model '{owner}' has no option(s) {[key]}; its options are: {options or 'none'}")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, inner in nested.items():
        direct[head] = _replace(getattr(config, head), inner, owner)
    return dataclasses.replace(config, **direct)


def _option_names(config: Any, prefix: str = "") -> list[str]:
    names = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            names += _option_names(value, f"{prefix}{field.name}.")
        else:
            names.append(prefix + field.name)
    return names


def model_config(name: str, variant: str = "paper", **overrides: Any) -> Any:
    """The configuration dataclass of `name`/`variant` with `overrides` (dotted keys for nested fields)."""
    spec = MODELS.get(name)
    if variant not in spec.configs:
        raise UnknownNameError("variant", variant, sorted(spec.configs))
    return _replace(spec.configs[variant], overrides, name)


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
