"""`harness evaluate`: score the authors' released weights on a setting's test set, with no training.

Everything a user can get wrong is checked, and the weights are loaded, before the MLflow run is
created, so bad input records nothing. The run then goes through the evaluation and logging that
trained runs use (harness.scoring.evaluation.evaluate, tracking.log_evaluation, the efficiency
columns) and carries the tags the leaderboard ranks by, plus `entry=released-weights`, the
weights files' names and SHA-256, and the public constructor arguments as parameters.

`--weights runs:/RUN_ID/model` (or `models:/NAME/VERSION`, `models:/NAME@ALIAS`) evaluates a model
a run logged (harness/runs/models.py) on any setting the same way, tagged `entry=logged-model` with
the model's URI, id and source run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data import open_data
from harness.runs import tracking
from harness.runs.environment import git_commit, package_versions
from harness.runs.store import tracking_uri
from harness.runs.submit import SubmitResult, scoring_run
from harness.settings import get_setting

ENTRY = "released-weights"  # the `entry` tag of a released-weights run (trained runs have none)
LOGGED_ENTRY = "logged-model"  # the `entry` tag of a logged MLflow model (runs:/ or models:/) evaluated on a setting
PROFILE = "released"  # the `profile` tag: no training budget was spent
ESTIMATOR_ARG = "estimator"  # the public argument that takes a second file (HyperRes' level estimator)


@dataclass(frozen=True)
class ReleasedRequest:
    """What `harness evaluate` was asked to do."""

    model: str
    weights: str | None
    setting: str
    public_args: dict[str, Any] = field(default_factory=dict)
    estimator: str | None = None
    data_root: str | None = None
    metrics: tuple[str, ...] = ("psnr", "ssim")
    gpus: int = 0
    tile: int | None = None
    tile_overlap: int | None = None
    blind: bool = False
    efficiency_size: int = 128
    save_outputs: bool = True  # keep the restored test images as outputs/<task>/<image>.png artifacts
    precision: str = "fp32"  # autocast of the forward passes (harness/precision.py); scores stay float32
    compile: bool = False  # torch.compile the network (eager, tagged compile.fallback, if it fails)


@dataclass
class PreparedRelease:
    """A validated request with its model loaded, its data opened and its files hashed; nothing recorded yet."""

    request: ReleasedRequest
    public_code: str
    arguments: dict[str, Any]  # every public argument: the defaults with the given ones applied
    model: Any
    data: Any
    device: str
    files: dict[str, tuple[str, str]]  # role -> (file name, SHA-256)
    logged: Any = None  # harness.runs.models.LoggedModel when --weights is a runs:/ or models:/ URI
    source_profile: str | None = None  # the profile tag of the run that trained the logged model


def sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def one_line(message: str) -> str:
    """A loader's multi-line message as one line: the headline, the likely cause, then the details."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return "the weights could not be loaded"
    causes = [line for line in lines[1:] if line.startswith("likely cause")]
    details = [line for line in lines[1:] if not line.startswith("likely cause")]
    head = lines[0].rstrip(":")
    text = head + (": " + "; ".join(causes + details) if len(lines) > 1 else "")
    # the loaders name constructor arguments; on the command line they are given with --arg
    return re.sub(r"\bpass (?!--arg)([A-Za-z_]\w*=)", r"pass --arg \1", text)


def _file(path: str | None, option: str) -> Path:
    if not path:
        raise ValueError(f"harness evaluate needs {option} FILE: the authors' released checkpoint")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"{option} {path}: no such file")
    return file.resolve()


def _release(model: str):
    from zoo.released import RELEASES

    if model not in RELEASES:
        from zoo import MODELS

        known = "a zoo model" if model in MODELS else "not a zoo model"
        raise ValueError(f"--model {model}: {known} with no released-weights adapter; models with one: "
                         f"{', '.join(RELEASES.names())}")
    return RELEASES.get(model)


def _device(gpus: int) -> str:
    import torch

    if gpus < 0:
        raise ValueError(f"--gpus must be 0 or more, got {gpus}")
    if gpus == 0:
        return "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"--gpus {gpus}: no CUDA GPU is visible to PyTorch on this machine "
                         "(torch.cuda.is_available() is False); run with --gpus 0 to evaluate on the CPU")
    return "cuda"


def prepare(request: ReleasedRequest, uri: str | None = None) -> PreparedRelease:
    """Validate `request`, open its data and load its weights; raises ValueError (one line) on bad input.

    `uri` is the tracking store a runs:/ or models:/ --weights URI is read from.
    """
    from harness.runs.models import is_model_uri

    if is_model_uri(request.weights):
        return _prepare_logged(request, uri or tracking_uri())
    weights = _file(request.weights, "--weights")
    estimator = _file(request.estimator, "--estimator-weights") if request.estimator else None
    setting = get_setting(request.setting)
    release = _release(request.model)
    accepted = release.public_defaults()
    takes_estimator = ESTIMATOR_ARG in accepted
    valid = ", ".join(k for k in accepted if k != ESTIMATOR_ARG)
    for key in request.public_args:
        if key not in accepted or key == ESTIMATOR_ARG:
            hint = " (give the estimator's file with --estimator-weights)" if key == ESTIMATOR_ARG else ""
            raise ValueError(f"--arg {key}: not a public argument of {request.model}'s released model{hint}; "
                             f"{release.public_code} takes {valid}")
    if estimator is not None and not takes_estimator:
        raise ValueError(f"--estimator-weights: {request.model}'s released model has no separate estimator file")
    _check_options(request, setting)
    device = _device(request.gpus)
    data_root = str(Path(request.data_root).resolve()) if request.data_root else None
    data = open_data(setting, data_root)
    model = _load(request, weights, estimator, takes_estimator)
    files = {"weights": (weights.name, sha256(weights))}
    if estimator is not None:
        files["estimator"] = (estimator.name, sha256(estimator))
    arguments = {**accepted, **request.public_args}
    arguments.pop(ESTIMATOR_ARG, None)
    request = dataclasses.replace(request, data_root=data_root)
    return PreparedRelease(request, release.public_code, arguments, model, data, device, files)


def _check_options(request: ReleasedRequest, setting) -> None:
    """The checks of metrics, efficiency size, tile and --blind that every evaluation shares."""
    from harness.scoring.scorers import canonical

    canonical(list(request.metrics))
    if request.efficiency_size < 0:
        raise ValueError(f"--efficiency-size must be >= 0 (0: skip), got {request.efficiency_size}")
    if request.tile is not None:
        from harness.scoring.tiling import tile_grid

        tile_grid(request.tile, 1, request.tile_overlap)  # a non-positive tile is refused here
    if request.blind and not setting.continuous:
        raise ValueError(f"--blind needs a continuous setting; '{setting.name}' has fixed tasks")


def _prepare_logged(request: ReleasedRequest, uri: str) -> PreparedRelease:
    """A logged MLflow model (the network a run trained) evaluated on `request.setting`, loaded from store `uri`.

    --model, when given, must name the logged model's zoo model; the released-weights options
    (--arg, --estimator-weights) do not apply to it.
    """
    from harness.runs.models import load_logged

    setting = get_setting(request.setting)
    if request.public_args or request.estimator:
        raise ValueError(f"--arg and --estimator-weights are for authors' released files, not for {request.weights}")
    _check_options(request, setting)
    device = _device(request.gpus)
    data_root = str(Path(request.data_root).resolve()) if request.data_root else None
    data = open_data(setting, data_root)
    logged = load_logged(request.weights, uri)
    if request.model and request.model != logged.config["model"]:
        raise ValueError(f"--model {request.model}: {request.weights} is a {logged.config['model']} model "
                         "(leave --model out for a logged model)")
    request = dataclasses.replace(request, model=logged.config["model"], data_root=data_root)
    return PreparedRelease(request, "", {}, logged.network, data, device, {}, logged, _source_profile(logged, uri))


def _source_profile(logged, uri: str) -> str | None:
    """The profile tag of the run that logged the model, if that run is in store `uri`."""
    from mlflow.exceptions import MlflowException

    if not logged.source_run:
        return None
    try:
        return tracking.client(uri).get_run(logged.source_run).data.tags.get("profile")
    except MlflowException:  # a model registered from another store: provenance only, no reason to refuse
        return None


def _load(request: ReleasedRequest, weights: Path, estimator: Path | None, takes_estimator: bool):
    """zoo.load_released with the loader's refusal turned into one line naming the file and the cause."""
    from zoo.released import load_released

    extra = {ESTIMATOR_ARG: str(estimator) if estimator else None} if takes_estimator else {}
    try:
        return load_released(request.model, str(weights), **request.public_args, **extra)
    except (ValueError, LookupError) as err:  # ReleasedWeightsError, CheckpointReadError, unknown names
        raise ValueError(one_line(str(err))) from None
    except Exception as err:  # anything else an adapter raises on a file it cannot take
        raise ValueError(one_line(f"{weights} could not be loaded into {request.model}: "
                                  f"{type(err).__name__}: {err}")) from None


def _format(value: Any) -> str:
    """A public argument as a parameter: strings as they are, everything else as a Python literal."""
    if isinstance(value, tuple):
        value = list(value)
    return value if isinstance(value, str) else repr(value)


def command_line(prepared: PreparedRelease) -> str:
    """The `harness evaluate` command that reproduces this run (file names only, not their folders)."""
    request = prepared.request
    if prepared.logged is not None:  # the URI names the model: no --model, no file
        parts = ["harness", "evaluate", "--weights", prepared.logged.uri]
    else:
        parts = ["harness", "evaluate", "--model", request.model, "--weights", prepared.files["weights"][0]]
    if "estimator" in prepared.files:
        parts += ["--estimator-weights", prepared.files["estimator"][0]]
    for key, value in request.public_args.items():
        parts += ["--arg", f"{key}={_format(value)}"]
    parts += ["--setting", request.setting]
    if request.data_root:
        parts += ["--data-root", request.data_root]
    if request.tile:
        parts += ["--tile", str(request.tile)]
    if request.blind:
        parts += ["--blind"]
    if not request.save_outputs:
        parts += ["--no-save-outputs"]
    return shlex.join(parts)


def run_tags(prepared: PreparedRelease) -> dict[str, str]:
    """The tags a trained run carries for the leaderboard (setting, version, data, code), plus the release's."""
    request, setting = prepared.request, get_setting(prepared.request.setting)
    if prepared.logged is not None:
        return _logged_tags(prepared)
    commit = git_commit()
    tags = {
        "entry": ENTRY,
        "model": request.model,
        "variant": f"released:{prepared.files['weights'][0]}",
        "setting": request.setting,
        "setting_version": str(setting.version),
        "profile": PROFILE,
        "data_source": prepared.data.name,
        "data_fingerprint": prepared.data.fingerprint(),
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "released.public_code": prepared.public_code,
    }
    for role, (name, digest) in prepared.files.items():
        tags[f"released.{role}_file"] = name
        tags[f"released.{role}_sha256"] = digest
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    if request.blind:
        tags["blind"] = "true"
    return tags


def _logged_tags(prepared: PreparedRelease) -> dict[str, str]:
    """A logged model's evaluation: the leaderboard's tags, `entry=logged-model` and where the model came from.

    The variant and profile are those of the run that trained it, so the row reads like that
    run's; `logged_model.setting` is the setting it was trained on (it may differ from this one).
    """
    request, setting, logged = prepared.request, get_setting(prepared.request.setting), prepared.logged
    commit = git_commit()
    profile = prepared.source_profile or "logged"
    tags = {"entry": LOGGED_ENTRY, "model": logged.config["model"], "variant": logged.config["variant"],
            "setting": request.setting, "setting_version": str(setting.version), "profile": profile,
            "data_source": prepared.data.name, "data_fingerprint": prepared.data.fingerprint(),
            "git_commit": commit, "mlflow.source.git.commit": commit,
            "logged_model.uri": logged.uri, "logged_model.setting": logged.config["setting"]}
    if logged.model_id:
        tags["logged_model.id"] = logged.model_id
    if logged.source_run:
        tags["logged_model.source_run"] = logged.source_run
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    if request.blind:
        tags["blind"] = "true"
    return tags


def run_params(prepared: PreparedRelease) -> dict[str, Any]:
    """Parameters: every public argument, how it was evaluated, the zoo configuration, the setting's protocol."""
    request, setting = prepared.request, get_setting(prepared.request.setting)
    params: dict[str, Any] = {f"public.{k}": _format(v) for k, v in prepared.arguments.items()}
    params.update({"run.model": request.model, "run.setting": request.setting, "run.data_root": request.data_root,
                   "run.metrics": ",".join(request.metrics), "run.tile": request.tile,
                   "run.tile_overlap": request.tile_overlap, "run.device": prepared.device,
                   "run.blind": request.blind, "run.efficiency_size": request.efficiency_size,
                   "run.save_outputs": request.save_outputs, "run.precision": request.precision,
                   "run.compile": request.compile,
                   "run.public_args": json.dumps({k: _format(v) for k, v in request.public_args.items()}),
                   "run.command": command_line(prepared), "setting.version": setting.version})
    config = getattr(prepared.model, "config", None)
    if dataclasses.is_dataclass(config):
        from harness.runs.store import flatten

        params.update(flatten(dataclasses.asdict(config), "model."))
    params.update({f"protocol.{k}": v for k, v in dataclasses.asdict(setting.protocol).items()})
    return params


def evaluate_released(request: ReleasedRequest, explicit_uri: str | None = None) -> SubmitResult:
    """Validate and load (nothing recorded on bad input), then evaluate and log one run; FINISHED only on success."""
    from harness.runs.models import is_model_uri

    # a model URI is read from the store; released files are checked before the store is even opened
    uri = tracking_uri(explicit_uri) if is_model_uri(request.weights) else None
    prepared = prepare(request, uri)
    uri = uri or tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    kind = "logged" if prepared.logged is not None else "released"
    run_name = f"{prepared.request.model}-{kind}-{request.setting}-{uuid.uuid4().hex[:6]}"
    tags = {**run_tags(prepared), "precision": request.precision}  # the leaderboard's precision column
    run_id = tracking.start_run(mlflow, request.setting, run_name, tags, run_params(prepared))
    print(f"MLflow run {run_id} ({run_name}) in {uri}", flush=True)

    def score() -> dict[str, float]:
        from harness.runs.datasets import log_datasets

        log_datasets(mlflow, run_id, prepared.data, prepared.data.fingerprint(), train=False)  # nothing was trained
        return _score(mlflow, run_id, prepared)

    return scoring_run(mlflow, uri, run_id, score)


def _score(mlflow, run_id: str, prepared: PreparedRelease) -> dict[str, float]:
    """Evaluate on every test task as trained runs are evaluated, measure efficiency, log everything."""
    from harness.scoring.evaluation import evaluate
    from harness.scoring.scorers import build_scorers

    request, setting = prepared.request, get_setting(prepared.request.setting)
    scorers, missing = build_scorers(list(request.metrics), setting.protocol, prepared.device)
    for message in missing.values():
        print(f"[metrics] {message}", flush=True)
    if missing:  # recorded as missing, never as a number
        tracking.set_tags(mlflow, run_id, {"metrics.missing": ",".join(missing),
                                           **{f"metric_missing.{name}": why for name, why in missing.items()}})
    from harness.precision import Compiler

    compiler = Compiler(request.compile)
    result = evaluate(prepared.model, setting, prepared.data, prepared.device, blind=request.blind,
                      scorers=scorers, tile=request.tile, tile_overlap=request.tile_overlap,
                      save_outputs=request.save_outputs, precision=request.precision, compiler=compiler)
    if compiler.fallback is not None:
        tracking.set_tags(mlflow, run_id, {"compile.fallback": compiler.fallback})
    if request.efficiency_size:
        try:
            _log_efficiency(mlflow, run_id, prepared, setting)
        except Exception as err:  # a measurement must not fail an evaluated run
            print(f"[efficiency] not measured: {err!r}", flush=True)
            tracking.set_tags(mlflow, run_id, {"efficiency.error": repr(err)})
    if prepared.logged is not None:
        logged = prepared.logged
        tracking.log_json(mlflow, run_id, {"command": command_line(prepared), "model_uri": logged.uri,
                                           "model_id": logged.model_id, "source_run": logged.source_run,
                                           "config": logged.config}, "logged_model.json")
        return tracking.log_evaluation(mlflow, run_id, result, step=0)
    tracking.log_json(mlflow, run_id, {"command": command_line(prepared), "public_code": prepared.public_code,
                                       "arguments": {k: _format(v) for k, v in prepared.arguments.items()},
                                       "files": {r: {"name": n, "sha256": d} for r, (n, d) in prepared.files.items()}},
                      "released.json")
    return tracking.log_evaluation(mlflow, run_id, result, step=0)


def _log_efficiency(mlflow, run_id: str, prepared: PreparedRelease, setting) -> None:
    """Parameters, MACs and latency of the loaded model, logged as `efficiency.*` like a trained run's."""
    import torch
    from mlflow.entities import Param

    from harness.scoring.efficiency import EfficiencyConfig, measure
    from zoo import Conditioning

    cond = None
    if setting.continuous and not prepared.request.blind and setting.tasks[0].level is not None:
        cond = Conditioning(level=torch.tensor([setting.tasks[0].level / setting.level_scale]))
    figures = measure(prepared.model, EfficiencyConfig(size=prepared.request.efficiency_size), cond=cond)
    tracking.log_metrics(mlflow, run_id, figures.metrics(), step=0)
    mlflow.log_batch(run_id, params=[Param(k, str(v)) for k, v in figures.params_dict().items()])
    print(f"[efficiency] {figures.params:,} params, {figures.macs / 1e9:.3f} GMACs at {figures.input_size}, "
          f"CPU {figures.latency_ms or 0:.1f} ms", flush=True)
