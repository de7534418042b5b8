"""Issue 19: saved outputs, RGB / Y / MATLAB views, `harness rescore` and views on the leaderboard.

Real computations on the embedded derain suite and on scikit-image's photographs; the MLflow
runs are logged by tracking.log_evaluation, as every run is (tests/mlflow_runs.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from mlflow_runs import bench_home, log_run

from harness.cli import main
from harness.data import open_data
from harness.runs.rescore import compute
from harness.scoring.evaluation import evaluate
from harness.scoring.metrics import score
from harness.scoring.views import default_views, prefix
from harness.settings import get_protocol, get_setting
from zoo import create_model
from zoo.identity import Identity

SETTING = "derain"  # one task, seven real photographs: the fast tier stays fast


class Shifted(Identity):
    """The degraded input plus a constant per channel: a colour cast (blue) or a brightness shift."""

    def __init__(self, shift: tuple[float, float, float]):
        super().__init__()
        self.shift = torch.tensor(shift).view(1, 3, 1, 1)

    def forward(self, degraded, cond=None):
        return degraded + self.shift.to(degraded)


class Blurred(Identity):
    """A 3x3 mean filter of the degraded input: a cheap restorer whose outputs lie off the 8-bit grid."""

    def forward(self, degraded, cond=None):
        return torch.nn.functional.avg_pool2d(degraded, 3, stride=1, padding=1, count_include_pad=False)


def _evaluate(model, save: bool = True):
    setting = get_setting(SETTING)
    return evaluate(model, setting, open_data(setting), save_outputs=save)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Finished runs: a blurring restorer (outputs saved), identity without outputs, and two shifted inputs."""
    home = tmp_path_factory.mktemp("views")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    torch.manual_seed(0)
    with bench_home(home):
        ids = {
            # logged under a zoo model's name (the runs' tags need one); a real trained run: the slow test below
            "blurred": log_run(uri, SETTING, "nafnet", _evaluate(Blurred())),
            "no-outputs": log_run(uri, SETTING, "identity", _evaluate(create_model("identity"), save=False)),
            # a blue cast costs RGB PSNR but little luma; a brightness shift costs luma as much as RGB
            "blue-cast": log_run(uri, SETTING, "restormer", _evaluate(Shifted((0.0, 0.0, 0.25)))),
            "brighter": log_run(uri, SETTING, "airnet", _evaluate(Shifted((0.06, 0.06, 0.06)))),
        }
    return home, uri, ids


def _cli(args, home, capsys):
    with bench_home(home):
        code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_saved_outputs_are_the_scored_8bit_images(store):
    home, uri, ids = store
    client = MlflowClient(uri)
    run = client.get_run(ids["blurred"])
    files = [a.path for a in client.list_artifacts(ids["blurred"], "outputs/derain")]
    assert files and all(f.startswith("outputs/derain/") and f.endswith(".png") for f in files)
    assert run.data.metrics["outputs.bytes"] > 0 and run.data.tags["outputs"] == "saved"
    assert run.data.params["y/protocol.name"] == "promptir_y" and run.data.params["protocol.name"] == "promptir"
    assert client.get_run(ids["no-outputs"]).data.tags["outputs"] == "none"
    assert not client.list_artifacts(ids["no-outputs"], "outputs")


def test_rescore_under_own_protocols_gives_exactly_the_logged_numbers(store, capsys):
    home, uri, ids = store
    client = MlflowClient(uri)
    run = client.get_run(ids["blurred"])
    for name in ("promptir", "promptir_y"):
        metrics = compute(client, run, get_protocol(name))
        assert metrics and all(run.data.metrics[k] == v for k, v in metrics.items()), name
    code, out, _ = _cli(["rescore", "--run", ids["blurred"], "--protocol", "promptir_y", "--tracking-uri", uri],
                        home, capsys)
    assert code == 0 and "equal the logged ones" in out


def test_matlab_view_is_added_without_changing_existing_metrics(store, capsys):
    home, uri, ids = store
    client = MlflowClient(uri)
    before = client.get_run(ids["brighter"]).data.metrics
    code, out, err = _cli(["rescore", "--setting", SETTING, "--protocol", "matlab", "--tracking-uri", uri], home, capsys)
    assert code == 0, err
    assert "no saved outputs" in err and ids["no-outputs"] in err  # named and skipped
    after = client.get_run(ids["brighter"]).data
    assert {k: after.metrics[k] for k in before} == before
    assert after.params["matlab/protocol.name"] == "matlab" and "matlab/psnr/avg" in after.metrics
    setting = get_setting(SETTING)
    assert prefix(setting, get_protocol("matlab")) == "matlab/"


def test_y_view_equals_pyiqa_and_scikit_image_on_real_photos():
    pyiqa = pytest.importorskip("pyiqa")
    from skimage import color, data
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    y_view = default_views(get_setting(SETTING))["y/"]
    assert y_view.name == "promptir_y"
    # eps=0: pyiqa adds 1e-8 to the MSE by default (5e-5 dB here)
    ycbcr = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", eps=0, device="cpu")
    yiq = pyiqa.create_metric("psnr", test_y_channel=True, eps=0, device="cpu")  # pyiqa's default luma: YIQ's Y
    for photo in (data.astronaut(), data.chelsea(), data.coffee()):
        clean = photo.astype(np.float64) / 255
        cast = np.clip(clean + rng.normal(0, 0.05, clean.shape) + [0.02, -0.01, 0.04], 0, 1)
        cast = np.round(cast * 255) / 255  # as a saved output
        as_tensor = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
        ours = score(as_tensor(cast), as_tensor(clean), y_view)
        luma = lambda a: color.rgb2ycbcr(a)[..., 0] / 255
        assert float(ours["psnr"]) == pytest.approx(peak_signal_noise_ratio(luma(clean), luma(cast), data_range=1), abs=1e-9)
        assert float(ours["ssim"]) == pytest.approx(structural_similarity(luma(clean), luma(cast), data_range=1), abs=1e-9)
        pair = as_tensor(cast).float(), as_tensor(clean).float()
        assert float(ours["psnr"]) == pytest.approx(float(ycbcr(*pair)), abs=5e-6)  # pyiqa converts in float32
        # YIQ's Y is BT.601's without the 219/255 studio range: PSNR higher by 20 log10(255/219) = 1.3227 dB
        assert float(ours["psnr"]) - float(yiq(*pair)) == pytest.approx(20 * np.log10(255 / 219), abs=5e-6)


def test_order_flips_between_rgb_and_y_with_the_rank_change_column(store, capsys):
    home, uri, ids = store
    boards = {}
    for view in ("rgb", "y"):
        code, out, err = _cli(["leaderboard", "--setting", SETTING, "--view", view, "--format", "json",
                               "--tracking-uri", uri], home, capsys)
        assert code == 0, err
        boards[view] = {r["run_id"]: r for r in json.loads(out)["rows"] if r["source"] == "reproduced"}
    cast, bright = ids["blue-cast"], ids["brighter"]
    rgb, y = boards["rgb"], boards["y"]
    assert rgb[bright]["rank"] < rgb[cast]["rank"] and y[cast]["rank"] < y[bright]["rank"]
    gain = rgb[cast]["rank"] - y[cast]["rank"]
    assert rgb[cast]["rank_change"] == f"Y: +{gain}" and y[cast]["rank_change"] == f"RGB: -{gain}"
    assert rgb[bright]["rank_change"].startswith("Y: -")
    assert set(rgb[cast]["views"]) >= {"own", "y"}  # the JSON carries every view
    assert rgb[cast]["views"]["y"]["average"]["psnr"] == y[cast]["average"]["psnr"]
    code, out, _ = _cli(["leaderboard", "--setting", SETTING, "--tracking-uri", uri], home, capsys)
    assert "rank change" in out and f"Y: +{gain}" in out


def test_reported_rows_say_which_view_their_paper_used(store, capsys):
    home, uri, _ = store
    code, out, _ = _cli(["leaderboard", "--setting", "five_deg", "--source", "reported", "--format", "json",
                         "--tracking-uri", uri], home, capsys)
    views = {r["citation"]: r["view"] for r in json.loads(out)["rows"]}
    assert views["HAIR Tab. 2"] == views["HAIR Tab. 4"] == "rgb" and views["DaAIR Tab. 2"] == "not stated"
    code, out, _ = _cli(["leaderboard", "--setting", "five_deg", "--source", "reported", "--tracking-uri", uri],
                        home, capsys)
    assert "not stated" in out


def test_stale_rescores_exactly_the_older_version_entries(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = _evaluate(create_model("identity"))
    with bench_home(tmp_path):
        old = log_run(uri, SETTING, "identity", result, run_name="old")
        current = log_run(uri, SETTING, "identity", result, run_name="current")
    client = MlflowClient(uri)
    client.set_tag(old, "y/protocol.scored", "promptir_y v0")  # as scored before promptir_y's version 1
    code, out, err = _cli(["rescore", "--stale", "--tracking-uri", uri], tmp_path, capsys)
    assert code == 0, err
    assert old in out and current not in out and "updated" in out
    assert client.get_run(old).data.tags["y/protocol.scored"] == "promptir_y v1"
    code, out, _ = _cli(["rescore", "--stale", "--tracking-uri", uri], tmp_path, capsys)
    assert "nothing to re-score" in out
    # no run holds the matlab view yet: the board says which command adds it
    code, out, _ = _cli(["leaderboard", "--setting", SETTING, "--view", "matlab", "--tracking-uri", uri], tmp_path, capsys)
    assert code == 0 and f"`harness rescore --setting {SETTING} --protocol matlab`" in out


@pytest.mark.parametrize("args, message", [
    (["--run", "{blurred}", "--protocol", "promtpir_y"], "Did you mean 'promptir_y'?"),
    (["--run", "0123456789abcdef", "--protocol", "promptir"], "no run '0123456789abcdef'"),
    (["--run", "{no-outputs}", "--protocol", "matlab"], "has no saved outputs"),
    (["--setting", "hyperres_dejpeg", "--protocol", "promptir"], "holds greyscale images"),
])
def test_bad_input_is_one_clear_line_and_exit_2(store, capsys, args, message):
    home, uri, ids = store
    code, out, err = _cli(["rescore", *[a.format(**ids) for a in args], "--tracking-uri", uri], home, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_leaderboard_view_that_does_not_fit_the_setting_is_one_line_and_exit_2(store, capsys):
    home, uri, _ = store
    code, out, err = _cli(["leaderboard", "--setting", "hyperres_dejpeg", "--source", "all", "--view", "rgb",
                           "--tracking-uri", uri], home, capsys)
    assert code == 2 and "does not fit setting 'hyperres_dejpeg' (greyscale images)" in err
    assert len(err.strip().splitlines()) == 1


def test_dashboard_view_switch_reranks_and_marks_the_rows_whose_rank_changes(store, monkeypatch):
    """The leaderboard page's view switch (AppTest on the real runs above): the order flips, the column says so."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboards import tables as dashboard_tables
    from leaderboards.board import build_board

    home, uri, ids = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(__file__).parents[1] / "dashboards" / "app.py"), default_timeout=240)
    at.session_state["setting"] = SETTING
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (switch,) = [r for r in at.radio if r.label == "Protocol view"]
    assert switch.value == "rgb" and switch.options == ["RGB", "Y", "MATLAB"]

    def ranking():
        (frame,) = [d.value for d in at.dataframe if "rank change" in d.value.columns]
        return frame.set_index("run id")

    rgb = ranking()
    cast, bright = ids["blue-cast"], ids["brighter"]
    assert rgb.loc[bright, "rank"] < rgb.loc[cast, "rank"] and rgb.loc[cast, "rank change"].startswith("Y: +")
    switch.set_value("y").run()
    assert not at.exception, [e.value for e in at.exception]
    y = ranking()
    assert y.loc[cast, "rank"] < y.loc[bright, "rank"] and y.loc[cast, "rank change"].startswith("RGB: -")
    assert y.loc[cast, "PSNR avg"] == pytest.approx(logged_metrics(uri, cast)["y/psnr/avg"])
    # the marked rows are exactly those whose rank changes
    frame = dashboard_tables.ranking_tables(build_board(SETTING, uri, view="y"), lambda e, r: "")[
        build_board(SETTING, uri).reproduced["ranking"].iloc[0]]
    styles = dashboard_tables.mark_rank_changes(frame)._compute().ctx
    marked = {frame.loc[i, "run id"] for (i, _), style in styles.items() if style}
    assert cast in marked and bright in marked
    assert marked == {r for r, c in zip(frame["run id"], frame["rank change"]) if c and not c.endswith(": +0")}
    st.cache_data.clear()


def logged_metrics(uri: str, run_id: str) -> dict[str, float]:
    """A run's logged metrics."""
    return MlflowClient(uri).get_run(run_id).data.metrics


def test_a_restored_image_entry_of_saved_outputs_scores_both_views_exactly_and_keeps_them(store, tmp_path, capsys):
    """`harness evaluate --outputs` on a run's own saved outputs: the same numbers in both views, outputs kept."""
    home, uri, ids = store
    client = MlflowClient(uri)
    folder = Path(client.download_artifacts(ids["blurred"], "outputs", str(tmp_path)))
    code, _, err = _cli(["evaluate", "--outputs", str(folder), "--name", "blurred-saved", "--setting", SETTING,
                         "--tracking-uri", uri], home, capsys)
    assert code == 0, err
    (entry,) = [r for r in client.search_runs([client.get_run(ids["blurred"]).info.experiment_id])
                if r.data.tags.get("model") == "blurred-saved"]
    logged = client.get_run(ids["blurred"]).data.metrics
    keys = [k for k in logged if k.startswith(("psnr/", "ssim/", "y/psnr/", "y/ssim/"))]
    assert len(keys) == 2 * 2 * (len(get_setting(SETTING).task_names) + 1) and all(entry.data.metrics[k] == logged[k] for k in keys)
    assert entry.data.tags["outputs"] == "saved" and entry.data.params["y/protocol.name"] == "promptir_y"
    assert compute(client, entry, get_protocol("promptir")) == {k: logged[k] for k in keys if k.startswith(("psnr", "ssim"))}


@pytest.mark.slow
def test_a_submitted_run_saves_its_outputs_and_rescores_to_exactly_its_logged_numbers(harness_home):
    """End to end through Ray: `harness submit` keeps outputs by default; `harness rescore` reproduces its scores."""
    from conftest import run_harness

    submitted = run_harness(["submit", "--model", "nafnet", "--setting", "derain", "--profile", "smoke",
                             "--steps", "2", "--efficiency-size", "0"], harness_home, timeout=900)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("restoration-bench/derain").experiment_id])
    assert run.data.tags["outputs"] == "saved" and run.data.metrics["outputs.bytes"] > 0
    assert len(client.list_artifacts(run.info.run_id, "outputs/derain")) == 7
    for protocol in ("promptir", "promptir_y"):
        rescored = run_harness(["rescore", "--run", run.info.run_id, "--protocol", protocol], harness_home, timeout=300)
        assert rescored.returncode == 0 and "equal the logged ones" in rescored.stdout, rescored.stderr[-2000:]
    skipped = run_harness(["submit", "--model", "identity", "--setting", "derain", "--profile", "smoke", "--steps", "1",
                           "--efficiency-size", "0", "--no-save-outputs"], harness_home, timeout=900)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    runs = client.search_runs([run.info.experiment_id])
    (bare,) = [r for r in runs if r.info.run_id != run.info.run_id]
    assert bare.data.tags["outputs"] == "none" and bare.data.params["run.save_outputs"] == "False"


def test_rescore_on_a_store_that_does_not_exist_says_so_in_one_line_and_creates_nothing(tmp_path):
    from conftest import harness_main

    done = harness_main(["rescore", "--setting", "five_deg", "--protocol", "matlab"], tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "does not exist yet" in line and str(tmp_path / "mlflow.db") in line
    assert not (tmp_path / "mlflow.db").exists()
