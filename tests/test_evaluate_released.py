"""`harness evaluate`: released weights scored with no training, recorded in MLflow, ranked and marked.

Bad input gets one line on stderr, exit 2 and nothing in the store; a Lightning file with an argparse
Namespace loads; the fixture restormer goes on the leaderboard and the dashboard, marked as released
weights, ranked with a trained run on the same test-set fingerprint.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import harness_main, recorded_runs, run_harness
from mlflow.tracking import MlflowClient
from mlflow_runs import bench_home, evaluation, log_run
from released import meta, released_state, write_released

from harness.cli.evaluate import parse_public_args
from harness.runs import released as released_runs
from harness.runs.released import ReleasedRequest, one_line, prepare
from leaderboards.board import build_board
from leaderboards.render import board_records, board_text
from leaderboards.runs import RELEASED

# The fixture's public arguments that differ from the public constructor's defaults, as a user types them
FIXTURE_ARGS = ["--arg", "dim=16", "--arg", "num_blocks=[1,2,2,2]", "--arg", "num_refinement_blocks=1"]
FIXTURE_KWARGS = {"dim": 16, "num_blocks": [1, 2, 2, 2], "num_refinement_blocks": 1}


def refused(home: Path, args: list[str]) -> str:
    """Run `harness evaluate ARGS`; it must exit 2 with exactly one line on stderr and record nothing."""
    result = harness_main(["evaluate", *args], home)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert recorded_runs(home) == []
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The fixture checkpoints in their released containers, and the bad files made from them."""
    folder = tmp_path_factory.mktemp("released")
    out = {"withbias": write_released("restormer_withbias", folder / "restormer_withbias.pth"),
           "biasfree": write_released("restormer_biasfree", folder / "gaussian_color_denoising_blind.pth")}
    whole = out["withbias"].read_bytes()
    out["truncated"] = folder / "truncated.pth"
    out["truncated"].write_bytes(whole[: len(whole) // 2])
    marker = folder / "pwned"
    out["marker"] = marker

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    out["code"] = folder / "code.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "extra": RunsCode()}, out["code"])
    out["lightning"] = folder / "epoch=3-step=100.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"net.{k}": v for k, v in released_state("restormer_withbias").items()},
                "hyper_parameters": {"opt": argparse.Namespace(lr=2e-4, batch_size=8, de_type=["denoise_15"])}},
               out["lightning"])
    return out


def test_arg_values_are_python_or_json_literals():
    args = parse_public_args(["dim=48", "num_blocks=[4,6,6,8]", "ffn_expansion_factor=2.66", "bias=False",
                              "fast_imp=true", "LayerNorm_type=BiasFree", "train_size=[1, 3, 256, 256]", "name='x=y'"])
    assert args == {"dim": 48, "num_blocks": [4, 6, 6, 8], "ffn_expansion_factor": 2.66, "bias": False,
                    "fast_imp": True, "LayerNorm_type": "BiasFree", "train_size": [1, 3, 256, 256], "name": "x=y"}
    with pytest.raises(ValueError, match="--arg expects KEY=VALUE"):
        parse_public_args(["dim"])


def test_a_loaders_message_becomes_one_line_with_the_cause_first_and_the_argument_as_a_flag():
    message = ("x.pth does not fit restormer with {'dim': 16}:\n  10 model tensor(s) missing from the file, first a\n"
               "  likely cause: no LayerNorm biases: a bias-free Restormer? pass LayerNorm_type=BiasFree")
    assert one_line(message) == ("x.pth does not fit restormer with {'dim': 16}: likely cause: no LayerNorm biases: "
                                 "a bias-free Restormer? pass --arg LayerNorm_type=BiasFree; 10 model tensor(s) "
                                 "missing from the file, first a")


def test_the_entry_tag_is_the_one_the_leaderboard_marks():
    assert released_runs.ENTRY == RELEASED == "released-weights"


# ---- bad input: one line, exit 2, nothing recorded ----

def test_a_bias_free_checkpoint_loaded_as_with_bias_names_the_argument(files, harness_home):
    line = refused(harness_home, ["--model", "restormer", "--weights", str(files["biasfree"]), *FIXTURE_ARGS,
                                  "--setting", "five_deg"])
    assert "no LayerNorm biases" in line and "--arg LayerNorm_type=BiasFree" in line and "gaussian_color" in line


def test_a_checkpoint_of_another_width_is_refused(files, harness_home):
    """The restormer fixture (dim 16) with the public defaults (dim 48): the wrong configuration for the file."""
    line = refused(harness_home, ["--model", "restormer", "--weights", str(files["withbias"]), "--setting", "derain"])
    assert "does not fit restormer" in line and "shape mismatch" in line


def test_a_checkpoint_of_another_model_is_refused_and_named(files, harness_home):
    from zoo.released import RELEASES

    others = [name for name in RELEASES.names() if name != "restormer"]
    if not others:
        pytest.skip("only the restormer adapter is registered")
    line = refused(harness_home, ["--model", others[0], "--weights", str(files["withbias"]), "--setting", "derain"])
    assert "restormer" in line and others[0] in line


def test_a_truncated_file_is_refused(files, harness_home):
    line = refused(harness_home, ["--model", "restormer", "--weights", str(files["truncated"]), *FIXTURE_ARGS,
                                  "--setting", "derain"])
    assert "truncated" in line and "truncated.pth" in line


def test_a_pickle_that_runs_code_is_refused_and_the_code_never_runs(files, harness_home):
    line = refused(harness_home, ["--model", "restormer", "--weights", str(files["code"]), "--setting", "derain"])
    assert "refused" in line and "system" in line
    assert not files["marker"].exists()


def test_a_greyscale_release_is_refused(files, harness_home):
    line = refused(harness_home, ["--model", "restormer", "--weights", str(files["withbias"]), *FIXTURE_ARGS,
                                  "--arg", "inp_channels=1", "--arg", "out_channels=1", "--setting", "derain"])
    assert "greyscale" in line and "inp_channels=1" in line


def test_missing_weights_are_refused(files, harness_home):
    line = refused(harness_home, ["--model", "restormer", "--setting", "derain"])
    assert "needs --weights FILE" in line
    line = refused(harness_home, ["--model", "restormer", "--weights", str(harness_home / "nowhere.pth"),
                                  "--setting", "derain"])
    assert "nowhere.pth: no such file" in line


def test_an_unknown_argument_lists_the_accepted_ones(files, harness_home):
    line = refused(harness_home, ["--model", "restormer", "--weights", str(files["withbias"]), "--arg", "width=16",
                                  "--setting", "derain"])
    assert "--arg width" in line and all(k in line for k in ("dim", "num_blocks", "LayerNorm_type", "heads"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpus_without_a_gpu_is_refused(files, harness_home):
    line = refused(harness_home, ["--model", "restormer", "--weights", str(files["withbias"]), *FIXTURE_ARGS,
                                  "--setting", "derain", "--gpus", "1"])
    assert "no CUDA GPU" in line and "--gpus 0" in line


def test_a_lightning_file_with_a_namespace_in_hyper_parameters_loads(files):
    """The restricted unpickler keeps the tensors; the model equals the one loaded from the BasicSR file."""
    request = ReleasedRequest("restormer", str(files["lightning"]), "derain", FIXTURE_KWARGS)
    prepared = prepare(request)
    reference = prepare(ReleasedRequest("restormer", str(files["withbias"]), "derain", FIXTURE_KWARGS))
    assert not prepared.model.training
    for key, value in reference.model.state_dict().items():
        assert torch.equal(prepared.model.state_dict()[key], value), key
    assert prepared.files["weights"] == (files["lightning"].name, hashlib.sha256(files["lightning"].read_bytes()).hexdigest())


def test_a_failure_after_the_run_starts_marks_it_failed(files, tmp_path, monkeypatch):
    from harness.runs.submit import RunFailedError

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory while restoring")

    monkeypatch.setattr("harness.scoring.evaluation.evaluate", broken)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bench_home(tmp_path), pytest.raises(RunFailedError, match="out of memory"):
        released_runs.evaluate_released(ReleasedRequest("restormer", str(files["withbias"]), "derain", FIXTURE_KWARGS,
                                                        efficiency_size=0), uri)
    (run,) = recorded_runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["entry"] == RELEASED
    assert "out of memory" in run.data.tags["error"]
    (test_set,) = run.inputs.dataset_inputs  # logged before scoring; released weights have no training input
    assert test_set.dataset.digest == run.data.tags["data_fingerprint"] and test_set.tags[0].value == "test"


# ---- the leaderboard marks released weights and compares them with the papers ----

def test_released_rows_are_marked_ranked_with_trained_runs_and_compared_with_the_papers(tmp_path):
    """Logged as `harness evaluate` tags them; the scores are an identity model's (what is tested is the board)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tags = {"entry": RELEASED, "variant": "released:deraining.pth", "profile": "released"}
    with bench_home(tmp_path):  # derain: one task of 7 images, and HAIR Tab. 3b reports Restormer on it
        trained = log_run(uri, "derain", "identity", evaluation("derain", "identity"))
        mine = log_run(uri, "derain", "restormer", evaluation("derain", "identity"), extra_tags=tags)
        real = log_run(uri, "derain", "restormer", evaluation("derain", "identity"), extra_tags=tags,
                       data_source="/data/allinone", fingerprint="f" * 16)
    board = build_board("derain", uri, source="all")
    rows = {r["run_id"]: r for r in board_records(board)["rows"] if r["source"] == "reproduced"}
    assert rows[mine]["entry"] == RELEASED and rows[trained]["entry"] == "trained"
    assert rows[mine]["ranking"] == rows[trained]["ranking"] and {rows[mine]["rank"], rows[trained]["rank"]} == {1, 2}
    differences = board.differences.set_index("run_id")
    embedded, on_real = differences.loc[[mine]], differences.loc[[real]]
    assert set(embedded["citation"]) == {"HAIR Tab. 3b"}
    assert embedded["psnr/derain"].iloc[0] == pytest.approx(rows[mine]["tasks"]["derain"]["psnr"] - 36.74)
    assert set(embedded["entry"]) == {RELEASED} and not embedded["comparable"].any()
    assert "variant" not in " ".join(embedded["caveat"])  # the authors' weights are the paper's configuration
    assert on_real["comparable"].all()  # released weights scored on the real test sets compare with the paper
    text = board_text(board)
    line = next(line for line in text.splitlines() if mine in line)
    assert "restormer" in line and "released-weights" in line and "released:deraining.pth" in line


# ---- done when: harness evaluate puts a fixture checkpoint on the leaderboard and the dashboard, marked ----

@pytest.mark.slow
def test_harness_evaluate_ranks_the_fixture_restormer_on_the_board_and_the_dashboard(files, harness_home, monkeypatch):
    """restormer_withbias on the embedded five_deg (35 images): about 1-3 minutes on 2 busy cores."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    uri = f"sqlite:///{harness_home / 'mlflow.db'}"
    with bench_home(harness_home):
        trained = log_run(uri, "five_deg", "identity", evaluation("five_deg", "identity"))
    result = run_harness(["evaluate", "--model", "restormer", "--weights", str(files["withbias"]), *FIXTURE_ARGS,
                          "--setting", "five_deg", "--efficiency-size", "32"], harness_home, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [r for r in recorded_runs(harness_home) if r.info.run_id != trained]
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert run.info.status == "FINISHED" and run.info.run_id in result.stdout
    assert tags["entry"] == RELEASED and tags["model"] == "restormer" and tags["data_source"] == "embedded"
    assert tags["released.weights_file"] == "restormer_withbias.pth"
    assert tags["released.weights_sha256"] == hashlib.sha256(files["withbias"].read_bytes()).hexdigest()
    trained_tags = MlflowClient(uri).get_run(trained).data.tags
    for key in ("setting", "setting_version", "data_fingerprint", "git_commit", "version.torch"):
        assert tags[key] == trained_tags[key], key
    assert params["public.dim"] == "16" and params["public.num_blocks"] == "[1, 2, 2, 2]"
    assert params["public.LayerNorm_type"] == "WithBias" and params["protocol.name"] == "promptir"
    assert {f"psnr/{t}" for t in ("avg", "dehaze", "derain", "denoise_25", "deblur", "lowlight")} <= set(metrics)
    assert metrics["efficiency.params"] == meta("restormer_withbias")["parameters"]
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id, "samples")}
    assert len(artifacts) == 5 and "results/per_image.json" in {
        a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id, "results")}

    board = run_harness(["leaderboard", "--setting", "five_deg", "--format", "json"], harness_home)
    rows = {r["run_id"]: r for r in json.loads(board.stdout)["rows"]}
    mine = rows[run.info.run_id]
    assert mine["entry"] == RELEASED and rows[trained]["entry"] == "trained"
    assert mine["ranking"] == rows[trained]["ranking"] and sorted([mine["rank"], rows[trained]["rank"]]) == [1, 2]
    assert mine["average"]["psnr"] == pytest.approx(metrics["psnr/avg"])

    st.cache_data.clear()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    app = AppTest.from_file(str(Path(__file__).parents[1] / "dashboards" / "app.py"), default_timeout=240)
    app.session_state["setting"] = "five_deg"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    (ranking,) = [d.value for d in app.dataframe if "lead clear of noise" in d.value.columns]
    shown = ranking.set_index("run id")
    assert shown.loc[run.info.run_id, "entry"] == RELEASED and shown.loc[trained, "entry"] == "trained"
    assert shown.loc[run.info.run_id, "PSNR avg"] == pytest.approx(metrics["psnr/avg"])
    st.cache_data.clear()
