"""Plug-in models in runs: load `--model-file` files, ship them to Ray workers, record them in MLflow.

A file is imported on the driver (zoo.plugins.load_file checks it), copied to the harness home
under its import name, and handed to Ray as a runtime_env `py_modules` entry, so every worker on
every node imports the same code by that name (RunConfig.plugin_modules). The run carries the
file's name and SHA-256 as tags and the file itself as an artifact (plugin/<file>), so a row can be
reproduced from MLflow alone; entry-point models carry their package's name and version.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from zoo.plugins import Plugin, PluginError, load_entry_points, load_file, plugin_of, preflight

ARTIFACT_DIR = "plugin"


def load_model_files(paths: list[str] | None) -> list[Plugin]:
    """Import each `--model-file` (and the installed entry points); ValueError (one line) on a bad file."""
    load_entry_points()
    return [load_file(path) for path in paths or []]


def staged_modules(plugins: list[Plugin]) -> tuple[str, ...]:
    """Copies of the plug-in files named by their import name, for Ray's runtime_env `py_modules`."""
    from harness.runs.store import home

    if not plugins:  # nothing to stage: no folder either
        return ()
    folder = home() / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    for plugin in plugins:
        target = folder / f"{plugin.module}.py"
        if not target.exists():
            shutil.copyfile(plugin.path, target)
        staged.append(str(target))
    return tuple(staged)


def check_model(model: str, variant: str, options: dict) -> None:
    """Pre-flight a plug-in model (a 1x3x64x64 forward must keep its shape); zoo models are not checked."""
    if plugin_of(model) is not None:
        preflight(model, variant, **options)


def plugin_tags(model: str) -> dict[str, str]:
    """The tags that mark a run of a plug-in model (none for a zoo model)."""
    plugin = plugin_of(model)
    if plugin is None:
        return {}
    if plugin.kind == "file":
        return {"plugin": "file", "plugin.file": Path(plugin.path).name if plugin.path else plugin.module,
                "plugin.sha256": plugin.sha256 or "", "plugin.module": plugin.module}
    from importlib.metadata import version

    package = plugin.package or ""
    return {"plugin": "entry-point", "plugin.module": plugin.module, "plugin.package": package,
            "plugin.version": version(package) if package else ""}


def check_resumable(run_id: str, model: str, modules: list[str] | tuple[str, ...], tags: dict[str, str]) -> None:
    """A resumed run of a plug-in file needs that same file again (`--model-file`): its trial workers
    import it by the name its SHA-256 gives. ValueError (one line) naming the file when it is not loaded."""
    from zoo.plugins import PLUGINS

    if any(module not in PLUGINS for module in modules):
        name = tags.get("plugin.file", "its plug-in file")
        raise ValueError(f"run {run_id} trains the plug-in model '{model}' of {name} "
                         f"(SHA-256 {tags.get('plugin.sha256', '?')[:16]}...): resume it with that same file as "
                         f"--model-file (the run stores it as the artifact {ARTIFACT_DIR}/{name})")


def log_plugin_file(mlflow, run_id: str, model: str) -> None:
    """Store the plug-in file of `model` as the run's artifact plugin/<file name> (nothing for others)."""
    plugin = plugin_of(model)
    if plugin is not None and plugin.kind == "file" and plugin.path:
        mlflow.log_artifact(run_id, plugin.path, ARTIFACT_DIR)


__all__ = ["PluginError", "check_model", "check_resumable", "load_model_files", "log_plugin_file", "plugin_tags", "staged_modules"]
