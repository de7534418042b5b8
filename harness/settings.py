"""Benchmark settings: versioned protocols loaded from YAML files in harness/settings/."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.registry import Registry

SETTINGS_DIR = Path(__file__).with_name("settings")


@dataclass(frozen=True)
class MetricProtocol:
    """How restored images are scored (recorded with every number)."""

    color: str = "rgb"  # "rgb": all colour channels; "y": ITU-R BT.601 luma
    data_range: float = 1.0
    clip: bool = True  # outputs clipped to [0, 1] ...
    quantize: bool = False  # ... but not re-quantised to 8 bits (PromptIR utils/val_utils.py)
    border: int = 0  # pixels cropped from every side before scoring
    ssim: str = "ssim"  # metric registry name of the SSIM variant
    psnr: str = "psnr"


@dataclass(frozen=True)
class Degradation:
    """A named degradation model and its parameters (see harness/degradations.py)."""

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

    @property
    def task_names(self) -> list[str]:
        """Names of the tasks, in table order."""
        return [t.name for t in self.tasks]


def _parse(raw: dict[str, Any], path: Path) -> Setting:
    try:
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
            protocol=MetricProtocol(**raw.get("protocol", {})),
            changelog={int(k): v for k, v in raw["changelog"].items()},
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
