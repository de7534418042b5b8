"""What the zoo holds — each model's summary, source, parameter counts and default configuration —
cached on disk under a digest of the zoo's sources (harness/cache.py).

Counting parameters builds every model, which needs torch; after the first call, `harness list
models`, shell completion and the leaderboard's parameter column read the cache instead.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from harness.cache import cached, package_digest
from harness.runs.store import flatten

VARIANTS = ("paper", "tiny")


def _describe_zoo() -> dict[str, dict[str, Any]]:
    from zoo import MODELS, model_config, parameter_count
    from zoo.plugins import plugin_of

    # every named configuration: paper and tiny, plus any other a model registers (res_hair's "code")
    return {name: {"summary": MODELS.get(name).summary, "source": MODELS.get(name).source,
                   "params": {v: parameter_count(name, v) for v in _variants(MODELS.get(name).configs)},
                   # as MLflow holds params: str() of each field, so a run's params compare as text
                   "config": {v: {k: str(x) for k, x in flatten(dataclasses.asdict(model_config(name, v))).items()}
                              for v in _variants(MODELS.get(name).configs)}}
            for name in MODELS if plugin_of(name) is None}  # plug-ins change without the zoo: never cached


def _variants(configs: dict[str, Any]) -> list[str]:
    """paper, tiny, then a model's other configurations in registration order."""
    return [*VARIANTS, *(v for v in configs if v not in VARIANTS)]


def zoo_catalogue() -> dict[str, dict[str, Any]]:
    """model -> {'summary', 'source', 'params': {variant: count}, 'config': {variant: {dotted field: str}}}.

    Variants are paper and tiny, then any other configuration the model registers.
    """
    return cached("zoo", package_digest("zoo"), _describe_zoo)


def default_parameter_count(model: str, variant: str) -> int | None:
    """Parameters of a zoo model's unchanged configuration, or None for a model or variant the zoo lacks."""
    return zoo_catalogue().get(model, {}).get("params", {}).get(variant)


def default_config(model: str, variant: str) -> dict[str, str] | None:
    """A zoo model's configuration as dotted fields and their str() forms, or None for an unknown model or variant."""
    return zoo_catalogue().get(model, {}).get("config", {}).get(variant)
