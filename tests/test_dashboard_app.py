"""The Streamlit dashboard, page by page, with AppTest on real MLflow runs (and on an empty store)."""
import io
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import streamlit.testing.v1.app_test as app_test
from PIL import Image
from streamlit.runtime.caching import cache_utils
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from dashboards import charts, data, launch
from dashboards.text import escape
from harness.cli import main
from harness.settings import SETTINGS
from leaderboards.artifacts import split_strip, zoom_crop
from leaderboards.board import build_board
from mlflow_runs import bench_home, evaluation, log_run
from zoo import parameter_count

APP = str(Path(__file__).parents[1] / "dashboards" / "app.py")
UI = "http://mlflow.example:5000"
ODD_SOURCE = "/data/*bench*_[x]<b>"
ODD_NAME = "<script>alert(1)</script> **bold**"
LEVELS = "hyperres_denoise"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Finished runs: five_deg on the embedded suite and on 'real data' with odd names, and a level setting."""
    assert LEVELS in SETTINGS, "the HyperRes denoising setting (tasks with levels) is registered"
    home = tmp_path_factory.mktemp("dashboard")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with bench_home(home):
        ids = {
            "identity": log_run(uri, "five_deg", "identity", evaluation("five_deg", "identity")),
            "nafnet": log_run(uri, "five_deg", "nafnet", evaluation("five_deg", "nafnet")),
            "odd": log_run(uri, "five_deg", "identity", evaluation("five_deg", "identity"), data_source=ODD_SOURCE,
                           fingerprint="0123456789abcdef", run_name=ODD_NAME),
            "levels": log_run(uri, LEVELS, "identity", evaluation(LEVELS, "identity")),
        }
        for level in (15, 35):  # dedicated one-level runs (HyperRes's "Baseline"); identity needs no training
            log_run(uri, LEVELS, "identity", evaluation(LEVELS, "identity"), train_level=level)
    return uri, ids


@pytest.fixture(autouse=True)
def fresh_cache():
    """Streamlit's data cache outlives an AppTest: every test starts from an empty one."""
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def open_page(monkeypatch, uri, setting, page=None):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RESTORATION_BENCH_MLFLOW_UI", UI)
    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["setting"] = setting
    at.run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


SIGNATURES = {"ranking": "lead clear of noise", "reported": "zoo model", "differences": "Δ PSNR avg",
              "points": "params_m", "metrics": "metric", "tags": "tag", "per-image": "image"}


def tables(at, kind):
    """The page's dataframes of one kind (recognised by a column only that kind has), in page order."""
    return [d.value for d in at.dataframe if SIGNATURES.get(kind, kind) in d.value.columns]


def table(at, kind):
    (frame,) = tables(at, kind)
    return frame


def test_leaderboard_page_ranks_each_test_set_apart_with_intervals(monkeypatch, store):
    uri, ids = store
    at = open_page(monkeypatch, uri, "five_deg")
    assert at.title[0].value == "Leaderboard: five\\_deg"
    board = build_board("five_deg", uri)
    rankings = list(dict.fromkeys(board.reproduced["ranking"]))
    assert [s.value for s in at.subheader] == [f"Reproduced: {escape(r)}" for r in rankings] + [
        "Reported in the papers (not ranked)", "Reproduced minus reported"]
    odd, embedded = tables(at, "ranking")
    assert embedded["model"].tolist() == ["identity", "nafnet"] and embedded["rank"].tolist() == [1, 2]
    expected = board.reproduced.set_index("run_id")
    for row in embedded.to_dict("records"):
        run = expected.loc[row["run id"]]
        assert row["PSNR avg"] == pytest.approx(run["psnr/avg"])
        assert row["PSNR avg 95% CI"] == f"[{run['psnr/avg/ci_low']:.2f}, {run['psnr/avg/ci_high']:.2f}]"
        assert row["MLflow run"] == (f"{UI}/#/experiments/{run['experiment_id']}/runs/{row['run id']}"
                                     "?workflowType=machine_learning")  # the runs view, not GenAI's overview
    assert embedded.loc[1, "params (M)"] == pytest.approx(parameter_count("nafnet", "tiny") / 1e6)
    assert bool(embedded.loc[0, "lead clear of noise"]) is True
    assert odd["data source"].tolist() == [ODD_SOURCE] and odd["run id"].tolist() == [ids["odd"]]
    reported = table(at, "reported")
    assert len(reported) == 31 and set(reported["citation"]) == {"HAIR Tab. 2", "HAIR Tab. 4", "DaAIR Tab. 2"}
    differences = table(at, "differences")
    assert differences["reported"].tolist() == ["HAIR Tab. 2: NAFNet", "DaAIR Tab. 2: NAFNet"]
    assert not differences["comparable"].any()
    # sortable columns: Streamlit sorts a column by its Arrow type, and strings would put 9.5 after 10.2
    for frame in (odd, embedded, reported, differences):
        numeric = [c for c in frame.columns if (c in ("rank", "runs") or c.startswith(("PSNR", "SSIM", "Δ PSNR", "params")))
                   and not c.endswith("CI")]
        assert numeric and all(frame[c].dtype.kind in "if" for c in numeric), frame.dtypes[numeric].to_dict()


def test_a_run_logged_after_the_first_render_appears_once_the_30_s_cache_ttl_has_passed(monkeypatch, store):
    """The README's "new runs appear within 30 s": the queries' cache lives at most 30 s (fake clock, no sleep)."""
    assert data.TTL <= 30
    uri, _ = store
    setting = "derain"  # a setting no other test of this store looks at (one task: quick to evaluate)
    now = [1000.0]
    monkeypatch.setattr(cache_utils, "TTLCACHE_TIMER", lambda: now[0])  # read when the (cleared) caches are rebuilt
    with bench_home(Path(uri[len("sqlite:///"):]).parent):
        log_run(uri, setting, "identity", evaluation(setting, "identity"))
        at = open_page(monkeypatch, uri, setting)
        assert len(tables(at, "ranking")) == 1
        log_run(uri, setting, "identity", evaluation(setting, "identity"), data_source="/data/new",
                fingerprint="a" * 16)
    now[0] += data.TTL - 1
    at.run()
    assert len(tables(at, "ranking")) == 1  # still the cached query: the cache is really in the way
    now[0] += 2
    at.run()
    assert not at.exception and [t["data source"].tolist() for t in tables(at, "ranking")] == [["/data/new"], ["embedded"]]


def test_harness_dashboard_serves_on_loopback_without_usage_statistics(monkeypatch, tmp_path):
    """The command `harness dashboard` execs: Streamlit bound to 127.0.0.1, headless, no usage statistics."""
    from streamlit import config

    calls = []
    monkeypatch.setattr(launch.os, "execve", lambda *call: calls.append(call))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    main(["dashboard", "--tracking-uri", uri])
    ((path, argv, env),) = calls
    assert path == argv[0] and argv[1:5] == ["-m", "streamlit", "run", str(launch.APP)]
    flags = dict(zip(argv[5::2], argv[6::2]))
    assert flags["--server.address"] == "127.0.0.1" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.headless"] == "true" and flags["--server.port"] == "8501"
    assert all(f[2:] in config._config_options for f in flags), "every flag is a real Streamlit option"
    assert env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false" and env["MLFLOW_TRACKING_URI"] == uri
    main(["dashboard", "--tracking-uri", uri, "--address", "0.0.0.0"])  # only when asked
    assert dict(zip(calls[1][1][5::2], calls[1][1][6::2]))["--server.address"] == "0.0.0.0"


def test_leaderboard_filters_by_source_profile_and_data_source(monkeypatch, store):
    uri, ids = store
    at = open_page(monkeypatch, uri, "five_deg")
    source, profile, data_source = at.multiselect
    assert profile.options == ["default"] and sorted(data_source.options) == sorted(["embedded", ODD_SOURCE])
    data_source.set_value(["embedded"]).run()
    assert [s.value for s in at.subheader][0] == "Reproduced: " + escape(build_board("five_deg", uri).reproduced["ranking"].iloc[1])
    (embedded,) = tables(at, "ranking")
    assert set(embedded["data source"]) == {"embedded"}
    at.multiselect[1].set_value([]).run()
    assert "No run matches the chosen profiles and data sources." in [i.value for i in at.info]
    at.multiselect[0].set_value(["reported"]).run()
    assert len(at.dataframe) == 1 and len(tables(at, "reported")) == 1


def test_efficiency_page_plots_parameters_against_average_psnr(monkeypatch, store):
    uri, _ = store
    at = open_page(monkeypatch, uri, "five_deg", "efficiency")
    points = table(at, "points")
    nafnet = points[points["label"] == "nafnet (tiny, default)"].iloc[0]
    assert nafnet["params_m"] == pytest.approx(parameter_count("nafnet", "tiny") / 1e6)
    assert nafnet["psnr_low"] < nafnet["psnr"] < nafnet["psnr_high"]
    hair = points[points["label"] == "Res-HAIR (ours) [HAIR Tab. 2]"].iloc[0]
    assert (hair["params_m"], hair["psnr"]) == (29.0, 30.37)
    (chart,) = at.get("vega_lite_chart")
    assert '"params_m"' in chart.proto.spec and '"psnr"' in chart.proto.spec
    assert points.equals(charts.efficiency_points(build_board("five_deg", uri)))


def test_task_page_shows_per_task_psnr_of_the_chosen_rows(monkeypatch, store):
    uri, ids = store
    at = open_page(monkeypatch, uri, "five_deg", "tasks")
    bars = at.dataframe[0].value.set_index("label")
    assert set(bars.index) == {"identity (tiny, default)", "nafnet (tiny, default)"}
    board = build_board("five_deg", uri).reproduced.set_index("run_id")
    for task in ("dehaze", "derain", "denoise_25", "deblur", "lowlight"):
        assert bars.loc["nafnet (tiny, default)", task] == pytest.approx(board.loc[ids["nafnet"], f"psnr/{task}"])
    at.multiselect[0].set_value(["Res-HAIR (ours) [HAIR Tab. 2]"]).run()
    assert at.dataframe[0].value.set_index("label").loc["Res-HAIR (ours) [HAIR Tab. 2]", "derain"] == 38.11


def test_levels_page_plots_psnr_against_the_level_of_each_task(monkeypatch, store):
    uri, _ = store
    at = open_page(monkeypatch, uri, LEVELS, "levels")
    curves = at.dataframe[0].value.set_index("label")
    levels = charts.setting_levels(LEVELS)
    assert list(curves.columns) == [f"{v:g}" for v in sorted(levels.values())]
    identity = curves.loc["identity (tiny, default)"].to_numpy(float)
    # the noisy input's PSNR falls as sigma grows, at about 20 log10(1/sigma) for unclipped noise
    assert (np.diff(identity) < 0).all()
    assert identity[curves.columns.get_loc("15")] - identity[curves.columns.get_loc("30")] == pytest.approx(20 * np.log10(2), abs=0.6)
    assert curves.loc["Ours [HyperRes Tab. 1]", "15"] == 34.02
    dedicated = curves.loc["dedicated per level: identity (tiny)"]
    assert dedicated[["15", "35"]].tolist() == pytest.approx(identity[[curves.columns.get_loc(c) for c in ("15", "35")]])
    assert dedicated.drop(["15", "35"]).isna().all()
    # dedicated runs stand for one level only: they never enter the model rankings
    assert build_board(LEVELS, uri).reproduced["model"].tolist() == ["identity"]
    (chart,) = at.get("vega_lite_chart")
    assert '"level"' in chart.proto.spec
    other = open_page(monkeypatch, uri, "five_deg", "levels")
    assert "has no degradation levels" in other.info[0].value


@pytest.fixture
def media(monkeypatch):
    """The media stores AppTest creates (one per script run), kept so the test can read back the images shown."""
    stores = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recording)
    return stores


def shown_images(at, media):
    """(caption, uint8 array) of every image of the page's last run, in page order, decoded from what was served."""
    out = []
    for element in at.get("image"):
        (image,) = element.proto.imgs
        served = media[-1].get_file(image.url.rsplit("/", 1)[1])
        assert served.mimetype == "image/png"  # lossless: the pixels the run logged, no JPEG artefacts
        out.append((image.caption, np.asarray(Image.open(io.BytesIO(served.content)).convert("RGB"))))
    return out


def as_logged(images):
    """The uint8 pixels of an evaluation example as tracking.log_samples stores them."""
    return [(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in images]


def test_visual_page_shows_the_chosen_runs_degraded_restored_and_target_and_the_zoom_moves(monkeypatch, store, media):
    uri, ids = store
    at = open_page(monkeypatch, uri, "five_deg", "visual")
    run, task = at.selectbox(key="visual-run"), at.selectbox(key="visual-task")
    assert len(run.options) == 3
    assert task.options == sorted(["dehaze", "derain", "denoise_25", "deblur", "lowlight"])
    run.set_value(ids["nafnet"]).run()
    assert at.selectbox(key="visual-run").value == ids["nafnet"]
    at.selectbox(key="visual-task").set_value("derain").run()
    assert at.caption[0].value == f"PSNR on this task (mean over its test images): {evaluation('five_deg', 'nafnet').tasks['derain'].means['psnr']:.2f} dB"
    degraded, restored, target = as_logged(evaluation("five_deg", "nafnet").tasks["derain"].example)
    assert np.abs(restored.astype(int) - degraded).mean() > 5  # the untrained NAFNet visibly changes its input
    shown = shown_images(at, media)
    assert [c for c, _ in shown] == ["degraded", "restored", "target", "degraded (x4)", "restored (x4)", "target (x4)"]
    for (_, image), expected in zip(shown[:3], (degraded, restored, target)):
        np.testing.assert_array_equal(image, expected)
    for (_, crop), expected in zip(shown[3:], (degraded, restored, target)):
        np.testing.assert_array_equal(crop, zoom_crop(expected, (0.5, 0.5), 48, 4))

    # another run: the same test image, that run's own restoration (identity: the degraded input itself)
    at.selectbox(key="visual-run").set_value(ids["identity"]).run()
    shown = shown_images(at, media)
    np.testing.assert_array_equal(shown[0][1], degraded)
    np.testing.assert_array_equal(shown[1][1], degraded)
    np.testing.assert_array_equal(shown[2][1], target)

    # moving the crop to the top edge shows the first rows; a larger zoom enlarges the same pixels
    centred = shown_images(at, media)[5][1]
    at.slider[0].set_value(0.0).run()
    top = shown_images(at, media)[5][1]
    assert not np.array_equal(top, centred)
    np.testing.assert_array_equal(top[::4, ::4], target[:48, (target.shape[1] - 48) // 2:(target.shape[1] + 48) // 2])
    at.slider[3].set_value(8).run()
    zoomed = shown_images(at, media)[5][1]
    assert zoomed.shape == (48 * 8, 48 * 8, 3)
    np.testing.assert_array_equal(zoomed[::8, ::8], top[::4, ::4])


def test_zoomed_crop_is_a_nearest_neighbour_enlargement_of_the_right_pixels():
    image = (np.arange(60 * 60 * 3) % 251).astype(np.uint8).reshape(60, 60, 3)
    degraded, restored, target = split_strip(np.concatenate([image, image + 1, image + 2], axis=1))
    assert (restored == image + 1).all() and (target == image + 2).all()
    crop = zoom_crop(image, (0.5, 0.5), 10, 3)
    assert crop.shape == (30, 30, 3) and (crop[::3, ::3] == image[25:35, 25:35]).all()
    assert (zoom_crop(image, (0.0, 1.0), 10, 1) == image[0:10, 50:60]).all()  # clamped to the border


def test_run_page_links_to_mlflow_and_lists_everything_the_run_logged(monkeypatch, store):
    uri, ids = store
    at = open_page(monkeypatch, uri, "five_deg", "run")
    at.selectbox[0].set_value(ids["odd"]).run()
    (button,) = at.get("link_button")
    assert button.proto.url.startswith(f"{UI}/#/experiments/") and button.proto.url.endswith(f"/runs/{ids['odd']}?workflowType=machine_learning")
    assert ODD_NAME in at.text[0].value  # shown as plain text, never as HTML or Markdown
    metrics = table(at, "metrics").set_index("metric")["value"]
    assert {"psnr/avg", "ssim/avg", "psnr/dehaze"} <= set(metrics.index)
    assert table(at, "tags").set_index("tag").loc["data_source", "value"] == ODD_SOURCE
    per_image = table(at, "per-image")
    assert len(per_image) == 35 and per_image.groupby("task")["psnr"].mean()["dehaze"] == pytest.approx(metrics["psnr/dehaze"])


def test_every_page_shows_a_clear_empty_state_and_creates_no_store(monkeypatch, tmp_path):
    missing = tmp_path / "no-runs-yet.db"
    uri = f"sqlite:///{missing}"
    at = open_page(monkeypatch, uri, "five_deg")
    assert any("No finished runs of setting five\\_deg" in i.value for i in at.info)
    assert at.code[0].value == "harness submit --model res_hair --setting five_deg"
    assert len(at.dataframe) == 1 and len(tables(at, "reported")) == 1
    for page, message in [("efficiency", "only the papers' rows"), ("tasks", "only the papers' rows"),
                          ("visual", "nothing to look at"), ("run", "No finished runs")]:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and any(message in i.value for i in at.info), page
    at.session_state["setting"] = LEVELS
    at.switch_page("views/levels.py").run()
    assert any("only the papers' curves" in i.value for i in at.info)
    assert not missing.exists()
