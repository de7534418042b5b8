"""The resolved configuration of one run, and where the harness keeps its local state."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.profiles import PROFILES, Profile
from harness.settings import Setting, get_setting
from zoo import MODELS, model_config


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {"host": {"width": 8}} -> {"host.width": 8}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def home() -> Path:
    """Local state folder: $RESTORATION_BENCH_HOME, default ./.restoration-bench."""
    return Path(os.environ.get("RESTORATION_BENCH_HOME", ".restoration-bench")).resolve()


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a SQLite store in home()."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home() / 'mlflow.db'}"


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a submitted run (logged as MLflow params)."""

    model: str
    setting: str
    variant: str = "tiny"
    profile: str = "default"
    seed: int = 0
    steps: int | None = None  # overrides the profile's step budget
    data_root: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Resolve every name now, so a typo fails before Ray or MLflow start."""
        MODELS.get(self.model)
        get_setting(self.setting)
        PROFILES.get(self.profile)
        model_config(self.model, self.variant, **self.model_options)
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"--steps must be >= 0, got {self.steps}")

    def resolved_profile(self) -> Profile:
        """The profile with the step override applied."""
        profile = PROFILES.get(self.profile)
        return profile if self.steps is None else dataclasses.replace(profile, steps=self.steps)

    def resolved_setting(self) -> Setting:
        """The setting object."""
        return get_setting(self.setting)

    def params(self) -> dict[str, Any]:
        """Flat, fully resolved parameters of the run (run, profile, model config, protocol)."""
        flat: dict[str, Any] = {f"run.{k}": v for k, v in dataclasses.asdict(self).items() if k != "model_options"}
        flat.update({f"profile.{k}": v for k, v in dataclasses.asdict(self.resolved_profile()).items()})
        config = model_config(self.model, self.variant, **self.model_options)
        flat.update(flatten(dataclasses.asdict(config), "model."))
        setting = self.resolved_setting()
        flat["setting.version"] = setting.version
        flat.update({f"protocol.{k}": v for k, v in dataclasses.asdict(setting.protocol).items()})
        return flat
