"""`harness evaluate --outputs`: rank a folder of restored images from any method, with no model.

The folder is checked against the setting's test set before the MLflow run is created (bad input
records nothing), then scored against the targets under the setting's protocol and logged as
every evaluated run is logged (tracking.log_evaluation: metrics per task and on average, per-image
scores, sample strips), with the tags the leaderboard ranks by plus `entry=outputs`, the method's
name, and the SHA-256 of every file in the folder.
"""
from __future__ import annotations

import dataclasses
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness.data import open_data
from harness.runs import tracking
from harness.runs.environment import git_commit, package_versions
from harness.runs.store import tracking_uri
from harness.runs.submit import SubmitResult, scoring_run
from harness.settings import get_setting

ENTRY = "outputs"  # the `entry` tag of a restored-image entry
PROFILE = "outputs"  # no training budget the harness knows of
VARIANT = "outputs"


@dataclass(frozen=True)
class OutputsRequest:
    """What `harness evaluate --outputs` was asked to do."""

    outputs: str
    name: str
    setting: str
    data_root: str | None = None
    metrics: tuple[str, ...] = ("psnr", "ssim")
    save_outputs: bool = True  # keep the scored images as the run's outputs/<task>/<image>.png artifacts


@dataclass
class PreparedOutputs:
    """A checked folder with its data opened; nothing recorded yet."""

    request: OutputsRequest
    setting: object
    data: object
    folder: object  # harness.scoring.outputs.OutputsFolder


def prepare_outputs(request: OutputsRequest) -> PreparedOutputs:
    """Validate the request and every file of the folder; ValueError (one line) on bad input."""
    from harness.scoring.outputs import check_outputs
    from harness.scoring.scorers import canonical

    if not request.name or not request.name.strip() or any(c in request.name for c in "/\\\n"):
        raise ValueError(f"--name '{request.name}': give the method's name (no slashes)")
    setting = get_setting(request.setting)
    canonical(list(request.metrics))
    if request.data_root and not Path(request.data_root).is_dir():
        raise ValueError(f"--data-root {request.data_root}: no such folder")
    data_root = str(Path(request.data_root).resolve()) if request.data_root else None
    data = open_data(setting, data_root)
    folder = check_outputs(Path(request.outputs).expanduser(), setting, data)
    request = dataclasses.replace(request, outputs=str(Path(request.outputs).resolve()), data_root=data_root)
    return PreparedOutputs(request, setting, data, folder)


def command_line(request: OutputsRequest) -> str:
    """The `harness evaluate --outputs` command of this run."""
    parts = ["harness", "evaluate", "--outputs", request.outputs, "--name", request.name, "--setting", request.setting]
    if request.data_root:
        parts += ["--data-root", request.data_root]
    if tuple(request.metrics) != ("psnr", "ssim"):
        parts += ["--metrics", ",".join(request.metrics)]
    if not request.save_outputs:
        parts += ["--no-save-outputs"]
    return shlex.join(parts)


def run_tags(prepared: PreparedOutputs) -> dict[str, str]:
    """The tags every ranked run carries (setting, version, data, code), plus the entry's."""
    request, setting, commit = prepared.request, prepared.setting, git_commit()
    tags = {"entry": ENTRY, "model": request.name, "variant": VARIANT, "setting": request.setting,
            "setting_version": str(setting.version), "profile": PROFILE, "data_source": prepared.data.name,
            "data_fingerprint": prepared.data.fingerprint(), "git_commit": commit, "mlflow.source.git.commit": commit,
            "outputs.method": request.name, "outputs.folder": request.outputs,
            "outputs.files": str(len(prepared.folder.sha256)), "outputs.sha256": prepared.folder.digest()}
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    return tags


def run_params(prepared: PreparedOutputs) -> dict[str, object]:
    """Parameters: how the folder was scored and the setting's protocol."""
    request = prepared.request
    params = {"run.outputs": request.outputs, "run.name": request.name, "run.setting": request.setting,
              "run.data_root": request.data_root, "run.metrics": ",".join(request.metrics),
              "run.save_outputs": request.save_outputs,
              "run.command": command_line(request), "setting.version": prepared.setting.version}
    params.update({f"protocol.{k}": v for k, v in dataclasses.asdict(prepared.setting.protocol).items()})
    return params


def evaluate_outputs(request: OutputsRequest, explicit_uri: str | None = None) -> SubmitResult:
    """Check the folder (nothing recorded on bad input), then score and log one run; FINISHED only on success."""
    prepared = prepare_outputs(request)
    extra = prepared.folder.extra
    if extra:
        import sys

        print(f"warning: {len(extra)} extra file(s) in {request.outputs} are not scored: "
              f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}", file=sys.stderr, flush=True)
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    run_name = f"{request.name}-outputs-{request.setting}-{uuid.uuid4().hex[:6]}"
    run_id = tracking.start_run(mlflow, request.setting, run_name, run_tags(prepared), run_params(prepared))
    print(f"MLflow run {run_id} ({run_name}) in {uri}", flush=True)
    return scoring_run(mlflow, uri, run_id, lambda: _score(mlflow, run_id, prepared))


def _score(mlflow, run_id: str, prepared: PreparedOutputs) -> dict[str, float]:
    """Score every restored image as a model's outputs are scored; log the files' hashes and the evaluation."""
    from harness.scoring.outputs import score_outputs
    from harness.scoring.scorers import build_scorers

    request = prepared.request
    scorers, missing = build_scorers(list(request.metrics), prepared.setting.protocol, "cpu")
    for message in missing.values():
        print(f"[metrics] {message}", flush=True)
    if missing:
        tracking.set_tags(mlflow, run_id, {"metrics.missing": ",".join(missing),
                                           **{f"metric_missing.{name}": why for name, why in missing.items()}})
    result = score_outputs(prepared.folder, prepared.setting, prepared.data, scorers, save_outputs=request.save_outputs)
    tracking.log_json(mlflow, run_id, {"method": request.name, "command": command_line(request),
                                       "sha256": prepared.folder.sha256, "extra": prepared.folder.extra},
                      "outputs.json")
    return tracking.log_evaluation(mlflow, run_id, result, step=0)
