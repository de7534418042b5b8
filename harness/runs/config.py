"""The resolved configuration of one run: model, setting, variant, profile and overrides."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from harness.runs.store import flatten
from harness.runs.profiles import PROFILES, Profile
from harness.settings import SETTINGS, Setting, get_setting, level_task
from zoo import MODELS, model_config


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
    blind: bool = False  # continuous settings: restore with the model's own level estimate
    train_level: float | None = None  # continuous settings: train at this one level (a dedicated model)
    metrics: tuple[str, ...] = ("psnr", "ssim")  # scored on every test image (`harness list metrics`)
    efficiency_size: int = 128  # input side the efficiency columns are measured at (0: not measured)
    save_outputs: bool = True  # keep the restored test images as outputs/<task>/<image>.png artifacts
    profile_options: dict[str, Any] = field(default_factory=dict)  # profile field overrides, e.g. {"lr": 3e-4}
    plugin_modules: tuple[str, ...] = ()  # import names of --model-file plug-ins (on workers through py_modules)
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast of training and evaluation (harness/precision.py)
    compile: bool = False  # torch.compile the model for training and evaluation (eager if it fails)

    def validate(self) -> None:
        """Resolve every name now, so a typo fails before Ray or MLflow start."""
        MODELS.get(self.model)
        setting = get_setting(self.setting)
        PROFILES.get(self.profile)
        from harness.precision import PRECISIONS

        PRECISIONS.get(self.precision)  # UnknownNameError lists fp32, bf16, fp16
        model_config(self.model, self.variant, **self.model_options)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be a positive number of training steps, got {self.steps}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be a non-negative integer, got {self.seed}")
        if (self.blind or self.train_level is not None) and not setting.continuous:
            continuous = ", ".join(n for n in SETTINGS if SETTINGS.get(n).continuous)
            raise ValueError(f"--blind and dedicated levels need a continuous setting ({continuous}); "
                             f"'{self.setting}' has fixed tasks")
        if self.train_level is not None and self.train_level <= 0:
            raise ValueError(f"a dedicated training level must be positive, got {self.train_level}")
        from harness.scoring.scorers import canonical

        canonical(list(self.metrics))  # UnknownNameError lists the valid metrics
        if self.efficiency_size < 0:
            raise ValueError(f"--efficiency-size must be >= 0 (0: skip), got {self.efficiency_size}")
        tunable = sorted(f.name for f in dataclasses.fields(Profile) if f.name not in ("name", "description"))
        for key, value in self.profile_options.items():
            if key not in tunable:
                raise ValueError(f"'{key}' is not a training-profile field; valid fields: {', '.join(tunable)}")
            if key in ("lr", "steps", "batch_size", "patch_size") and not value > 0:
                raise ValueError(f"profile field '{key}' must be positive, got {value}")
        profile = self.resolved_profile()
        if not isinstance(profile.accumulate, int) or profile.accumulate < 1 or profile.batch_size % profile.accumulate:
            raise ValueError(f"--accumulate must be a positive divisor of the profile's batch of {profile.batch_size}, "
                             f"got {profile.accumulate}")

    def with_setting_options(self) -> "RunConfig":
        """This run with the model-config fields its setting decides filled in (given options win).

        A model whose configuration has a `degradation_types` field (DaAIR: one expert per
        degradation type) gets the number of distinct degradation kinds the setting trains on.
        The filled options become ordinary model options: logged, and used to rebuild the model.
        """
        fields = {f.name for f in dataclasses.fields(model_config(self.model, self.variant))}
        filled: dict[str, Any] = {}
        if "degradation_types" in fields:
            filled["degradation_types"] = len(self.resolved_setting().degradation_kinds)
        return dataclasses.replace(self, model_options={**filled, **self.model_options})

    def resolved_profile(self) -> Profile:
        """The profile with the step override applied."""
        profile = dataclasses.replace(PROFILES.get(self.profile), **self.profile_options)
        return profile if self.steps is None else dataclasses.replace(profile, steps=self.steps)

    def resolved_setting(self) -> Setting:
        """The setting object; a dedicated run's setting trains at its one level only."""
        setting = get_setting(self.setting)
        if self.train_level is None:
            return setting
        return dataclasses.replace(setting, train_tasks=(level_task(setting, self.train_level),))

    def params(self) -> dict[str, Any]:
        """Flat, fully resolved parameters of the run (run, profile, model config, protocol)."""
        nested = ("model_options", "profile_options")
        flat: dict[str, Any] = {f"run.{k}": v for k, v in dataclasses.asdict(self).items() if k not in nested}
        flat["run.model_options"] = json.dumps(self.model_options, sort_keys=True)  # rebuilds the model
        if self.profile_options:
            flat["run.profile_options"] = json.dumps(self.profile_options, sort_keys=True)
        flat["run.metrics"] = ",".join(self.metrics)
        flat["run.json"] = json.dumps(dataclasses.asdict(self), sort_keys=True)  # rebuilds the run (--resume)
        flat.update({f"profile.{k}": v for k, v in dataclasses.asdict(self.resolved_profile()).items()})
        config = model_config(self.model, self.variant, **self.model_options)
        flat.update(flatten(dataclasses.asdict(config), "model."))
        setting = self.resolved_setting()
        flat["setting.version"] = setting.version
        flat.update({f"protocol.{k}": v for k, v in dataclasses.asdict(setting.protocol).items()})
        return flat
