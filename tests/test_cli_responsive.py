"""Issue 26: commands where no model runs answer without importing torch, Ray or MLflow.

Each check runs the command in a fresh interpreter and reads `sys.modules` afterwards, because
the test process itself has long imported torch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cache

PROBE = """
import contextlib, io, json, sys
from harness.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main({argv!r})
    except SystemExit as stop:  # --help exits through argparse
        code = stop.code
print(json.dumps({{"code": code, "stdout": out.getvalue(),
                  "heavy": sorted(m for m in ("torch", "ray", "mlflow", "pyiqa") if m in sys.modules),
                  "board": sorted(m for m in ("pandas", "sqlalchemy") if m in sys.modules)}}))
"""


def probe(argv: list[str], cache_dir: Path, cwd: Path) -> dict:
    """Run `harness ARGV` in a new interpreter; its exit code, output, which heavy packages it imported
    ("heavy") and which of those a board needs ("board": pandas, and SQLAlchemy for MLflow's store)."""
    env = dict(os.environ, RESTORATION_BENCH_CACHE=str(cache_dir), RESTORATION_BENCH_HOME=str(cwd / "home"))
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory) -> Path:
    """A cache folder filled by `list models` and `list metrics`, run here (this process has torch already)."""
    from harness.cli import listing

    folder = tmp_path_factory.mktemp("cache")
    saved = os.environ.get(cache.CACHE_ENV)
    os.environ[cache.CACHE_ENV] = str(folder)
    try:
        listing.CATALOGUES.get("models")()
        listing.CATALOGUES.get("metrics")()
    finally:
        os.environ.pop(cache.CACHE_ENV)
        if saved is not None:
            os.environ[cache.CACHE_ENV] = saved
    assert {p.name for p in folder.iterdir()} == {"zoo.json", "metrics.json"}
    return folder


@pytest.mark.parametrize("argv", [["--help"], ["list", "settings"], ["list", "protocols"], ["list", "profiles"],
                                  ["list", "degradations"], ["data", "layout", "--setting", "five_deg"]])
def test_listing_commands_import_no_torch_ray_or_mlflow(argv, tmp_path):
    result = probe(argv, tmp_path / "cache", tmp_path)
    assert result["code"] == 0 and result["stdout"].strip()
    assert result["heavy"] == [], f"harness {' '.join(argv)} imported {result['heavy']}"


def test_data_check_without_decoding_imports_no_torch(tmp_path):
    root = tmp_path / "data"
    (root / "test" / "derain" / "Rain100L" / "input").mkdir(parents=True)
    argv = ["data", "check", "--root", str(root), "--setting", "derain", "--no-decode"]
    result = probe(argv, tmp_path / "c", tmp_path)
    assert result["code"] == 1  # an incomplete tree is reported, not crashed on
    assert result["heavy"] == []


def test_leaderboard_imports_neither_torch_nor_ray(warm_cache, tmp_path):
    """A run that recorded no parameter count gets the zoo's count from the cached catalogue, not from torch;
    a local store is read without MLflow (leaderboards/readers.py)."""
    import zoo
    from harness.runs import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)  # MLflow's own empty schema, copied
    experiment = client.create_experiment("restoration-bench/derain",
                                          artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment, tags={"setting": "derain", "setting_version": "1", "model": "nafnet",
                                              "variant": "tiny", "profile": "smoke", "data_source": "embedded",
                                              "data_fingerprint": "0" * 16})
    for name, value in {"psnr/derain": 25.0, "ssim/derain": 0.8, "psnr/avg": 25.0, "ssim/avg": 0.8}.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id, "FINISHED")
    result = probe(["leaderboard", "--setting", "derain", "--tracking-uri", uri, "--format", "json"], warm_cache,
                   tmp_path)
    assert result["code"] == 0
    assert result["heavy"] == [] and "sqlalchemy" not in result["board"]
    (row,) = json.loads(result["stdout"])["rows"]
    assert row["model"] == "nafnet" and row["params"] == zoo.parameter_count("nafnet", "tiny")


def _finished_run(client, experiment: str, model: str, psnr: float) -> None:
    """A FINISHED derain run of `model` scoring `psnr`, tagged as `harness submit` tags it."""
    run = client.create_run(experiment, tags={"setting": "derain", "setting_version": "1", "model": model,
                                              "variant": "tiny", "profile": "smoke", "data_source": "embedded",
                                              "data_fingerprint": "0" * 16})
    for name, value in {"psnr/derain": psnr, "ssim/derain": 0.8, "psnr/avg": psnr, "ssim/avg": 0.8}.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id, "FINISHED")


@pytest.mark.slow
def test_leaderboard_answers_from_its_cache_until_the_store_changes(warm_cache, tmp_path):
    """A repeated board of an unchanged local store imports not even pandas; a new finished run is shown at once."""
    from harness.runs import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)  # MLflow's own empty schema, copied
    experiment = client.create_experiment("restoration-bench/derain",
                                          artifact_location=(tmp_path / "artifacts").as_uri())
    _finished_run(client, experiment, "nafnet", 25.0)
    argv = ["leaderboard", "--setting", "derain", "--tracking-uri", uri, "--format", "json"]
    first = probe(argv, warm_cache, tmp_path)
    again = probe(argv, warm_cache, tmp_path)
    assert "pandas" in first["board"] and again["heavy"] == again["board"] == []
    assert again["stdout"] == first["stdout"]
    assert [r["model"] for r in json.loads(again["stdout"])["rows"]] == ["nafnet"]
    csv = probe([*argv[:-1], "csv"], warm_cache, tmp_path)  # other options: their own entry, computed
    assert "pandas" in csv["board"] and "nafnet" in csv["stdout"]
    _finished_run(client, experiment, "restormer", 27.0)
    changed = probe(argv, warm_cache, tmp_path)
    assert "pandas" in changed["board"]
    assert [r["model"] for r in json.loads(changed["stdout"])["rows"]] == ["restormer", "nafnet"]


def test_cached_model_and_metric_listings_equal_the_zoo_and_import_no_torch(warm_cache, tmp_path):
    import zoo
    from harness.scoring.scorers import SCORERS

    models = probe(["list", "models", "--format", "json"], warm_cache, tmp_path)
    assert models["heavy"] == []
    rows = {row["name"]: row for row in json.loads(models["stdout"])}
    assert set(rows) == set(zoo.MODELS)
    for name, row in rows.items():
        assert row["paper_params"] == zoo.parameter_count(name, "paper")
        assert row["tiny_params"] == zoo.parameter_count(name, "tiny")
    metrics = probe(["list", "metrics", "--format", "json"], warm_cache, tmp_path)
    assert metrics["heavy"] == []
    names = {row["name"] for row in json.loads(metrics["stdout"])}
    assert set(SCORERS) <= names and "pyiqa.niqe" in names


def test_cache_recomputes_when_its_key_changes_or_the_file_is_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    assert cache.cached("x", "key-1", compute) == {"n": 1}
    assert cache.cached("x", "key-1", compute) == {"n": 1}  # stored: not computed again
    assert cache.cached("x", "key-2", compute) == {"n": 2}  # another key: recomputed
    (tmp_path / "x.json").write_text("{not json")
    assert cache.cached("x", "key-2", compute) == {"n": 3}  # a damaged entry is recomputed, not trusted


def test_package_digest_follows_the_source_files(tmp_path, monkeypatch):
    package = tmp_path / "fakezoo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("WIDTH = 8\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = cache.package_digest("fakezoo")
    (package / "model.py").write_text("WIDTH = 16\n")
    assert cache.package_digest("fakezoo") != before


@pytest.mark.parametrize("line,expected", [("harness su", {"submit"}), ("harness list ", {"models", "settings"}),
                                           ("harness submit --setting five", {"five_deg"}),
                                           ("harness leaderboard --profile sm", {"smoke"})])
def test_shell_completion_offers_commands_and_names(line, expected, tmp_path):
    """argcomplete's protocol: the shell sets _ARGCOMPLETE and COMP_LINE, the program writes to fd 8."""
    env = dict(os.environ, _ARGCOMPLETE="1", _ARGCOMPLETE_IFS="\n", COMP_LINE=line, COMP_POINT=str(len(line)),
               RESTORATION_BENCH_CACHE=str(tmp_path))
    harness = str(Path(sys.executable).with_name("harness"))
    done = subprocess.run(["bash", "-c", f"'{harness}' 8>&1 9>/dev/null"], env=env, capture_output=True, text=True,
                          timeout=60)
    offered = {word.strip() for word in done.stdout.split("\n") if word.strip()}
    assert expected <= offered, (offered, done.stderr[-2000:])


def test_the_console_script_leaves_what_is_alive_to_the_exit_uncollected(tmp_path):
    """`console_main` freezes the heap when the command returns, so the interpreter's exit skips a
    collection of everything torch, MLflow and Ray loaded (2 s of a smoke submission); `main`, which
    tests and library users call in their own process, leaves their garbage collection alone."""
    script = ("import gc, sys; from harness.cli import console_main, main; "
              "sys.argv = ['harness', 'list', 'settings']; code = main(sys.argv[1:]); before = gc.get_freeze_count(); "
              "code += console_main(); print(before, gc.get_freeze_count(), code, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, RESTORATION_BENCH_HOME=str(tmp_path / "home")))
    before, after, code = map(int, done.stderr.split()[-3:])
    assert done.returncode == 0 and code == 0 and "five_deg" in done.stdout
    assert before == 0 and after > 10_000  # every object alive at the end of the command
