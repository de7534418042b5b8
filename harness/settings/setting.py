"""Benchmark settings: the Setting type and the registry of the versioned YAML files beside this module."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.settings.protocols import MetricProtocol, resolve_protocol
from zoo.registry import Registry

SETTINGS_DIR = Path(__file__).parent  # the YAML files beside this module


@dataclass(frozen=True)
class Degradation:
    """A named degradation model and its parameters (see harness/data/degradations.py)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One column of a setting's table: a degradation, its test set and its training share."""

    name: str
    degradation: Degradation
    test_set: str  # the real benchmark the papers score on
    train_sets: tuple[str, ...] = ()
    train_repeat: int = 1  # per-epoch repetition of the real training set (PromptIR / MoCE-IR)
    level: float | None = None  # degradation level in its own units (sigma, JPEG quality, scale)


@dataclass(frozen=True)
class Setting:
    """A named, versioned benchmark protocol."""

    name: str
    version: int
    description: str
    source: str
    tasks: tuple[TaskSpec, ...]
    protocol: MetricProtocol
    changelog: dict[int, str]
    #: tasks the model trains on when they differ from the evaluated ones (continuous settings)
    train_tasks: tuple[TaskSpec, ...] = ()
    #: continuous settings: the model is told level / level_scale (HyperRes Sec. 4.1: 255)
    level_scale: float | None = None
    #: continuous settings: every training patch is degraded at every training level at once
    all_levels_per_patch: bool = False
    #: images are converted to grey (replicated on 3 channels) before degradation (DeJPEG)
    greyscale: bool = False

    @property
    def task_names(self) -> list[str]:
        """Names of the tasks, in table order."""
        return [t.name for t in self.tasks]

    @property
    def degradation_kinds(self) -> list[str]:
        """Distinct degradation kinds of the training tasks, in order of first appearance.

        Tasks that differ only in level share a kind (three_deg's denoising at sigma 15, 25 and
        50 is one kind): DaAIR has one expert per degradation type (DaAIR Sec. 3.1).
        """
        return list(dict.fromkeys(t.degradation.kind for t in self.training_tasks))

    @property
    def training_tasks(self) -> tuple[TaskSpec, ...]:
        """The tasks training samples are drawn from."""
        return self.train_tasks or self.tasks

    @property
    def continuous(self) -> bool:
        """True for settings that evaluate a range of levels of one degradation (a curve)."""
        return self.level_scale is not None

    def trained_range(self) -> tuple[float, float] | None:
        """Lowest and highest training level of a continuous setting."""
        levels = [t.level for t in self.training_tasks if t.level is not None]
        return (min(levels), max(levels)) if levels else None


def level_task_name(prefix: str, level: float) -> str:
    """Task name of one level of a continuous setting, e.g. sigma_15 or scale_2."""
    return f"{prefix}_{level:g}"


def _level_tasks(spec: dict[str, Any], levels: list[float]) -> tuple[TaskSpec, ...]:
    """One task per level of a `levels:` block, its degradation parameter set to the level."""
    return tuple(
        TaskSpec(
            name=level_task_name(spec["task_prefix"], float(level)),
            degradation=Degradation(spec["degradation"], {**spec.get("params", {}), spec["param"]: level}),
            test_set=spec["test_set"],
            train_sets=tuple(spec.get("train_sets", ())),
            level=float(level),
        )
        for level in levels
    )


def level_task(setting: Setting, level: float) -> TaskSpec:
    """The task of a continuous setting at `level` (evaluated or trained), made if not listed."""
    for task in (*setting.tasks, *setting.training_tasks):
        if task.level == float(level):
            return task
    template = setting.tasks[0]
    param = next(k for k, v in template.degradation.params.items() if v == template.level)
    prefix = template.name.rsplit("_", 1)[0]
    return dataclasses.replace(
        template, name=level_task_name(prefix, float(level)), level=float(level),
        degradation=Degradation(template.degradation.kind, {**template.degradation.params, param: level}),
    )


def _expand_levels(spec: dict[str, Any]) -> tuple[list[float], list[float]]:
    evaluate = spec["evaluate"]
    if isinstance(evaluate, dict):  # {start, stop, step}, stop included
        start, stop, step = evaluate["start"], evaluate["stop"], evaluate["step"]
        evaluate = [start + i * step for i in range(int(round((stop - start) / step)) + 1)]
    return list(spec["train"]), list(evaluate)


def _parse(raw: dict[str, Any], path: Path) -> Setting:
    try:
        train_tasks: tuple[TaskSpec, ...] = ()
        continuous: dict[str, Any] = {}
        if "levels" in raw:  # a continuous setting: tasks generated from a range of levels
            spec = raw["levels"]
            train_levels, eval_levels = _expand_levels(spec)
            tasks, train_tasks = _level_tasks(spec, eval_levels), _level_tasks(spec, train_levels)
            continuous = dict(level_scale=float(spec["scale"]), all_levels_per_patch=bool(spec.get("all_levels_per_patch", True)))
        else:
            tasks = tuple(
                TaskSpec(
                    name=t["name"],
                    degradation=Degradation(t["degradation"]["kind"], dict(t["degradation"].get("params", {}))),
                    test_set=t["test_set"],
                    train_sets=tuple(t.get("train_sets", ())),
                    train_repeat=int(t.get("train_repeat", 1)),
                )
                for t in raw["tasks"]
            )
        setting = Setting(
            name=raw["name"],
            version=int(raw["version"]),
            description=raw["description"],
            source=raw["source"],
            tasks=tasks,
            protocol=resolve_protocol(raw.get("protocol")),
            changelog={int(k): v for k, v in raw["changelog"].items()},
            train_tasks=train_tasks,
            greyscale=bool(raw.get("greyscale", False)),
            **continuous,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"setting file {path} is malformed: {err!r}") from err
    if setting.version not in setting.changelog:
        raise ValueError(f"setting file {path}: version {setting.version} has no changelog entry")
    return setting


SETTINGS: Registry[Setting] = Registry("setting")
for _path in sorted(SETTINGS_DIR.glob("*.yaml")):
    _setting = _parse(yaml.safe_load(_path.read_text()), _path)
    SETTINGS.add(_setting.name, _setting)


def get_setting(name: str) -> Setting:
    """The registered setting `name` (UnknownNameError lists the valid ones)."""
    return SETTINGS.get(name)
