"""Model plug-ins: `--model-file` files and installed entry points register models the harness trains,
ranks and records like zoo models; a file that cannot be used is refused with one line naming it.

Bad input: exit 2, one line on stderr, nothing recorded (run in process through the console script's
`main`, so the fast tier imports torch once). The example plug-in (examples/plugin_model.py)
trains on the embedded three_deg through Ray (its workers import the file through runtime_env
py_modules), is marked on the leaderboard, and its run stores the file itself.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import recorded_runs, run_harness
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.runs import tracking
from leaderboards.runs import PLUGIN, entry_of
from zoo import load_models
from zoo import plugins as zoo_plugins
from zoo.factory import MODELS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugin_model.py"
HEADER = """\
from dataclasses import dataclass
from zoo import RestorationModel, register_model


@dataclass(frozen=True)
class Config:
    scale: int = 1


class Net(RestorationModel):
    def __init__(self, config):
        super().__init__()
        self.scale = config.scale

    def forward(self, degraded, cond=None):
        return degraded[..., ::self.scale, ::self.scale]
"""


@pytest.fixture
def in_process(harness_home, monkeypatch):
    """Run `harness` in this process (the same parser and code as the console script; torch is imported
    once, not per command, which keeps these tests fast) with its state in `harness_home`. Whatever a
    plug-in registers is removed afterwards, so no other test sees it."""
    monkeypatch.setenv("RESTORATION_BENCH_HOME", str(harness_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    load_models()  # the zoo's own models belong to the snapshot: a module is imported (registers) only once
    models, plugins, modules = dict(MODELS._items), dict(zoo_plugins.PLUGINS), set(sys.modules)

    def harness(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return code, out.getvalue(), err.getvalue()

    yield harness
    MODELS._items.clear()
    MODELS._items.update(models)
    zoo_plugins.PLUGINS.clear()
    zoo_plugins.PLUGINS.update(plugins)
    for name in set(sys.modules) - modules:
        if name.startswith("rb_plugin_"):
            del sys.modules[name]


def refused(harness, home: Path, model_file: Path, model: str = "mine") -> str:
    """`harness submit --model-file FILE` must exit 2 with one line on stderr and record nothing."""
    code, _, stderr = harness("submit", "--model-file", str(model_file), "--model", model, "--setting", "three_deg",
                              "--profile", "smoke")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert recorded_runs(home) == [] and not (home / "mlflow.db").exists()
    print(lines[0])  # with -s: what a user sees (the closing note quotes these)
    return lines[0]


def plugin(tmp_path: Path, body: str) -> Path:
    """A plug-in file: the shared header (a config and a network) and `body`."""
    path = tmp_path / "my_model.py"
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def test_a_missing_file_is_refused(in_process, harness_home):
    line = refused(in_process, harness_home, harness_home / "nowhere.py")
    assert "--model-file" in line and "nowhere.py: no such file" in line


def test_a_syntax_error_shows_its_line(in_process, harness_home, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\n\ndef build(config:\n    return None\n")
    line = refused(in_process, harness_home, path)
    assert f"{path}:3: syntax error" in line


def test_a_file_that_registers_nothing_is_refused(in_process, harness_home, tmp_path):
    line = refused(in_process, harness_home, plugin(tmp_path, "\nNOTHING = 1\n"))
    assert "my_model.py registers no model" in line and "register_model" in line


def test_a_name_that_clashes_with_a_zoo_model_is_refused(in_process, harness_home, tmp_path):
    path = plugin(tmp_path, """
        @register_model(configs={"paper": Config(), "tiny": Config()}, summary="s", source="t")
        def identity(config):
            return Net(config)
        """)
    line = refused(in_process, harness_home, path, model="identity")
    assert "my_model.py" in line and "model 'identity' clashes" in line


def test_a_forward_that_changes_the_image_size_is_refused(in_process, harness_home, tmp_path):
    path = plugin(tmp_path, """
        @register_model(configs={"paper": Config(scale=2), "tiny": Config(scale=2)}, summary="s", source="t")
        def halver(config):
            return Net(config)
        """)
    line = refused(in_process, harness_home, path, model="halver")
    assert "my_model.py" in line and "1x3x64x64 input into 1x3x32x32" in line


def test_the_example_plugin_is_listed_with_its_file(in_process):
    code, stdout, stderr = in_process("list", "models", "--model-file", str(EXAMPLE), "--format", "json")
    assert code == 0, stderr
    rows = {row["name"]: row for row in json.loads(stdout)}
    assert rows["tiny_rescnn"]["plugin"] == f"plug-in {EXAMPLE}" and "identity" in rows
    assert rows["tiny_rescnn"]["tiny_params"] > 0 and "plugin" not in rows["identity"]


def test_resuming_a_plugin_run_without_its_file_names_the_file(in_process, harness_home):
    """The resumed trial imports the plug-in by its SHA-256 name; without the file that is one line, exit 2."""
    import dataclasses

    from harness.runs.config import RunConfig

    digest = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    run = dataclasses.asdict(RunConfig(model="identity", setting="three_deg", profile="smoke",
                                       plugin_modules=(zoo_plugins.module_name(digest),)))
    client = tracking.client(f"sqlite:///{harness_home / 'mlflow.db'}")
    crashed = client.create_run(client.create_experiment("three_deg", (harness_home / "artifacts").as_uri()), tags={
        "plugin": "file", "plugin.file": EXAMPLE.name, "plugin.sha256": digest}).info.run_id
    client.log_param(crashed, "run.json", json.dumps({**run, "model": "tiny_rescnn"}))
    client.set_terminated(crashed, "FAILED")
    code, _, stderr = in_process("submit", "--resume", crashed)
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"plug-in model 'tiny_rescnn' of {EXAMPLE.name} (SHA-256 {digest[:16]}" in stderr
    assert f"--model-file (the run stores it as the artifact plugin/{EXAMPLE.name})" in stderr
    print(stderr.strip())


def test_an_unknown_model_error_survives_the_copy_ray_makes_of_a_trial_error():
    """A worker that lacks a plug-in raises UnknownNameError; Ray copies it, which must keep its message."""
    import copy
    import pickle

    from zoo.registry import UnknownNameError

    error = UnknownNameError("model", "tiny_rescnn", ["identity", "nafnet"])
    assert str(copy.copy(error)) == str(pickle.loads(pickle.dumps(error))) == str(error)


def test_a_plugin_row_is_marked():
    assert entry_of({"plugin": "file"}) == PLUGIN and entry_of({}) == "trained"


def board_rows(home: Path) -> dict:
    result = run_harness(["leaderboard", "--setting", "three_deg", "--format", "json"], home, timeout=300)
    assert result.returncode == 0, result.stderr
    return {r["model"]: r for r in json.loads(result.stdout)["rows"] if r["source"] == "reproduced"}


@pytest.mark.slow
def test_a_plugin_file_trains_on_ray_is_ranked_and_its_run_stores_the_file(harness_home):
    result = run_harness(["submit", "--model-file", str(EXAMPLE), "--model", "tiny_rescnn", "--setting", "three_deg",
                          "--profile", "smoke", "--steps", "5"], harness_home, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = recorded_runs(harness_home)
    digest = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert run.info.status == "FINISHED" and run.data.tags["plugin"] == "file"
    assert run.data.tags["plugin.sha256"] == digest and run.data.tags["plugin.file"] == EXAMPLE.name
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    stored = Path(client.download_artifacts(run.info.run_id, f"plugin/{EXAMPLE.name}", str(harness_home / "a")))
    assert stored.read_bytes() == EXAMPLE.read_bytes()
    row = board_rows(harness_home)["tiny_rescnn"]
    assert row["entry"] == PLUGIN and row["run_id"] == run.info.run_id


@pytest.mark.slow
def test_a_plugin_file_sweeps_on_ray_and_its_trials_are_marked(harness_home):
    """Each trial's child run describes the model before training: the worker imports the file first."""
    result = run_harness(["sweep", "--model-file", str(EXAMPLE), "--model", "tiny_rescnn", "--setting", "three_deg",
                          "--profile", "smoke", "--steps", "3", "--space", "lr=0.001", "--num-samples", "1",
                          "--max-failures", "0", "--efficiency-size", "0"], harness_home, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {run.data.tags.get("role", "trial"): run for run in recorded_runs(harness_home)}
    assert sorted(runs) == ["sweep", "trial"] and all(r.info.status == "FINISHED" for r in runs.values())
    digest = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert all(r.data.tags["plugin.sha256"] == digest for r in runs.values())
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    stored = client.download_artifacts(runs["sweep"].info.run_id, f"plugin/{EXAMPLE.name}", str(harness_home / "a"))
    assert Path(stored).read_bytes() == EXAMPLE.read_bytes()
    assert board_rows(harness_home)["tiny_rescnn"]["entry"] == PLUGIN


@pytest.mark.slow
def test_an_installed_entry_point_package_is_listed_and_trains(harness_home, tmp_path, monkeypatch):
    source = tmp_path / "src"
    (source / "rb_ep_demo").mkdir(parents=True)
    (source / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "rb-ep-demo"
        version = "0.1.0"

        [project.entry-points."restoration_bench.models"]
        ep_demo = "rb_ep_demo"

        [tool.setuptools]
        packages = ["rb_ep_demo"]
        """))
    (source / "rb_ep_demo" / "__init__.py").write_text(EXAMPLE.read_text().replace("tiny_rescnn", "ep_rescnn"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                    "--quiet", "--target", str(target), str(source)], check=True, timeout=300)
    monkeypatch.setenv("PYTHONPATH", str(target))  # run_harness copies os.environ; Ray's workers inherit it
    listed = run_harness(["list", "models", "--format", "json"], harness_home)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["ep_rescnn"]["plugin"] == "plug-in rb-ep-demo"
    result = run_harness(["submit", "--model", "ep_rescnn", "--setting", "three_deg", "--profile", "smoke",
                          "--steps", "5"], harness_home, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = recorded_runs(harness_home)
    assert run.data.tags["plugin"] == "entry-point" and run.data.tags["plugin.package"] == "rb-ep-demo"
    assert run.data.tags["plugin.version"] == "0.1.0"
    assert board_rows(harness_home)["ep_rescnn"]["entry"] == PLUGIN


def test_the_readme_shows_the_example_plugin_as_it_is():
    """Every code line of the README's plug-in example is a line of examples/plugin_model.py, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Plug in your own model"):]
    block = section[section.index("```python\n") + len("```python\n"):section.index("\n```", section.index("```python"))]
    lines = iter(EXAMPLE.read_text().splitlines())
    for line in filter(str.strip, block.splitlines()):
        assert any(line == candidate for candidate in lines), line
