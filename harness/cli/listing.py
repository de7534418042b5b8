"""`harness list`: print a registry (models, settings, metrics, protocols, profiles, degradations).

Only `list models` and `list metrics` need torch (building every model to count its parameters,
importing pyiqa); their rows are cached on disk under a digest of the zoo's sources and of pyiqa's
version (harness/catalogue.py, harness/cache.py), so after the first call they answer without torch.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from harness.cache import cached, distribution_version, file_digest
from harness.cli.registry import command, complete
from zoo.registry import Registry

CATALOGUES: Registry[Callable[[], list[dict[str, Any]]]] = Registry("list kind")


@CATALOGUES.register("models")
def model_rows() -> list[dict[str, Any]]:
    """Every zoo model with its paper and tiny parameter counts and those of its other configurations
    (res_hair's "code", the authors' public layout), from the zoo catalogue's cache."""
    from harness.catalogue import zoo_catalogue

    return [{"name": name, "paper_params": entry["params"]["paper"], "tiny_params": entry["params"]["tiny"],
             "other_params": {v: n for v, n in entry["params"].items() if v not in ("paper", "tiny")},
             "summary": entry["summary"], "source": entry["source"]} for name, entry in sorted(zoo_catalogue().items())]


def plugin_rows(model_files: list[str] | None = None) -> list[dict[str, Any]]:
    """Plug-in models (`--model-file` files and installed entry points) as rows like the zoo's, marked
    with where they come from; counted live (never cached: they change without the zoo)."""
    from importlib.metadata import entry_points

    if not model_files and not entry_points(group="restoration_bench.models"):
        return []  # nothing to import: `list models` stays torch-free
    from harness.runs.plugins import load_model_files
    from zoo import MODELS, parameter_count
    from zoo.plugins import PLUGINS

    load_model_files(model_files)
    rows = []
    for plugin in PLUGINS.values():
        for name in plugin.models:
            spec = MODELS.get(name)
            rows.append({"name": name, "paper_params": parameter_count(name, "paper"),
                         "tiny_params": parameter_count(name, "tiny"),
                         "other_params": {v: parameter_count(name, v) for v in spec.configs if v not in ("paper", "tiny")},
                         "summary": spec.summary, "source": spec.source,
                         "plugin": f"plug-in {plugin.path or plugin.package or plugin.module}"})
    return sorted(rows, key=lambda row: row["name"])


@CATALOGUES.register("settings")
def _settings() -> list[dict[str, Any]]:
    from harness.settings import SETTINGS

    return [{"name": n, "version": s.version, "tasks": s.task_names, "description": s.description}
            for n in SETTINGS for s in [SETTINGS.get(n)]]


def _describe_metrics() -> list[dict[str, Any]]:
    from harness.scoring.scorers import SCORERS, pyiqa_names, resolve

    specs = [SCORERS.get(n) for n in SCORERS] + [resolve("pyiqa." + n) for n in pyiqa_names()]
    return [{"name": s.name, "kind": s.kind, "better": "higher" if s.higher_better else "lower",
             "description": s.description} for s in specs]


@CATALOGUES.register("metrics")
def _metrics() -> list[dict[str, Any]]:
    import harness.scoring

    scorers = Path(harness.scoring.__path__[0]) / "scorers.py"
    key = f"pyiqa {distribution_version('pyiqa')} scorers {file_digest(scorers)}"
    return cached("metrics", key, _describe_metrics)


@CATALOGUES.register("protocols")
def _protocols() -> list[dict[str, Any]]:
    from harness.settings import PROTOCOLS

    return [{"name": n, "version": e.protocol.version, "color": e.protocol.color, "ssim": e.protocol.ssim,
             "border": e.protocol.border, "quantize": e.protocol.quantize, "description": e.description,
             "source": e.source} for n in PROTOCOLS for e in [PROTOCOLS.get(n)]]


@CATALOGUES.register("profiles")
def _profiles() -> list[dict[str, Any]]:
    from harness.runs.profiles import PROFILES

    # a recipe's budget is in epochs (its steps follow from the data); batch_size is the effective batch
    return [{"name": n, "steps": p.steps if p.epochs is None else None, "epochs": p.epochs, "batch_size": p.batch_size, "patch_size": p.patch_size, "lr": p.lr, "schedule": p.schedule,
             "description": p.description, "citation": p.citation or "-"}
            for n in PROFILES for p in [PROFILES.get(n)]]


@CATALOGUES.register("degradations")
def _degradations() -> list[dict[str, Any]]:
    from harness.data.degradations import DEGRADATIONS

    return [{"name": n, "description": (DEGRADATIONS.get(n).__doc__ or "").splitlines()[0]} for n in DEGRADATIONS]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):  # other_params: "code 28.56M", or "-" when a model has none
        return ", ".join(f"{k} {_cell(key, v).strip()}" for k, v in value.items()) or "-"
    if key.endswith("params"):
        return f"{value / 1e6:6.2f}M"
    return str(value)


def _arguments(p: argparse.ArgumentParser) -> None:
    complete(p.add_argument("kind", help=" | ".join(CATALOGUES)), lambda **_: list(CATALOGUES))
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--model-file", action="append", metavar="PATH",
                   help="models: also list the models a plug-in file registers (repeatable)")


@command("list", "list models, settings, metrics, protocols, profiles or degradations", _arguments)
def run(args: argparse.Namespace) -> int:
    """Print a registry as a table or as JSON."""
    items = CATALOGUES.get(args.kind)()  # an unknown kind raises UnknownNameError listing the valid ones
    if args.kind == "models":
        items = items + plugin_rows(args.model_file)
    elif args.model_file:
        raise ValueError("--model-file goes with `harness list models`")
    if args.format == "json":
        print(json.dumps(items, indent=2))
    else:
        for item in items:
            rest = {k: v for k, v in item.items() if k != "name"}
            print(f"{item['name']:<22} " + "  ".join(_cell(k, v) for k, v in rest.items()))
    return 0
