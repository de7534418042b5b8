"""Model plug-ins: a Python file, or an installed package's entry point, that registers models.

A plug-in registers models exactly as the zoo's own modules do, with `zoo.register_model` on a
builder. A file is imported under a name derived from its SHA-256 (`rb_plugin_<digest>`), so every
process that imports the same file (Ray workers get it through runtime_env `py_modules`) gives its
classes the same module name. Installed packages declare the module in the entry-point group
`restoration_bench.models`. Every check that can fail names the file: missing, syntax error (with
its line), nothing registered, a name that clashes with a zoo model, a forward that resizes.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENTRY_POINT_GROUP = "restoration_bench.models"
PREFLIGHT_SHAPE = (1, 3, 64, 64)


class PluginError(ValueError):
    """A plug-in that cannot be used; the message is one line naming the file and the cause."""


@dataclass
class Plugin:
    """Where plug-in models come from: a file (its path and SHA-256) or an installed package's entry point."""

    kind: str  # "file" | "entry-point"
    module: str
    path: str | None = None
    sha256: str | None = None
    package: str | None = None
    models: list[str] = field(default_factory=list)


PLUGINS: dict[str, Plugin] = {}  # module name -> plug-in
_ENTRY_POINTS_LOADED = False


def module_name(sha256: str) -> str:
    """The import name of a plug-in file with this SHA-256 (the same in every process)."""
    return f"rb_plugin_{sha256[:16]}"


def plugin_of(model: str) -> Plugin | None:
    """The plug-in that registered `model`, or None for a zoo model."""
    return next((p for p in PLUGINS.values() if model in p.models), None)


def _registered() -> set[str]:
    from zoo.factory import MODELS

    return set(MODELS.names())


def _clash(text: str) -> str | None:
    """The model name in a registry's 'registered twice' message, if that is what `text` is."""
    marker = "model '"
    if "registered twice" in text and marker in text:
        return text.split(marker, 1)[1].split("'", 1)[0]
    return None


def _execute(name: str, path: Path, label: str) -> None:
    """Import `path` as module `name`; any failure becomes a PluginError naming `label`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a plug-in's code may raise anything: each becomes one line naming the file
        sys.modules.pop(name, None)
        clash = _clash(str(err))
        if clash:
            raise PluginError(f"{label}: model '{clash}' clashes with a model already registered under that name "
                              f"(a zoo model or another plug-in); register it under another name") from None
        line = _line_in(err, path)
        raise PluginError(f"{label}{line}: importing it raised {type(err).__name__}: {err}") from None


def _line_in(err: BaseException, path: Path) -> str:
    """':LINE' of the deepest traceback frame inside `path`, or ''."""
    tb, line = err.__traceback__, ""
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line


def load_file(path: str | Path) -> Plugin:
    """Import a plug-in file and return what it registered; PluginError (one line) when it cannot be used."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise PluginError(f"--model-file {path}: no such file")
    file = file.resolve()
    source = file.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    name = module_name(digest)
    if name in PLUGINS:
        return PLUGINS[name]
    try:
        compile(source, str(file), "exec")
    except SyntaxError as err:
        text = (err.text or "").strip()
        raise PluginError(f"{file}:{err.lineno}: syntax error: {err.msg}" + (f": {text}" if text else "")) from None
    import zoo

    # the zoo's own models first (after the cheap checks above, which need no torch), so that a
    # clash is reported against them and `_registered() - before` is exactly what the file adds
    zoo.load_models()
    before = _registered()
    _execute(name, file, str(file))
    models = sorted(_registered() - before)
    if not models:
        sys.modules.pop(name, None)
        raise PluginError(f"{file} registers no model: decorate a builder with "
                          "zoo.register_model(configs={'paper': ..., 'tiny': ...}, summary=..., source=...)")
    PLUGINS[name] = Plugin("file", name, str(file), digest, models=models)
    return PLUGINS[name]


def import_module(name: str) -> None:
    """In a worker: import plug-in module `name` (on sys.path through Ray's py_modules), once."""
    if name in PLUGINS or name in sys.modules:
        return
    import zoo

    zoo.load_models()
    before = _registered()
    importlib.import_module(name)
    PLUGINS[name] = Plugin("file", name, models=sorted(_registered() - before))


def load_entry_points() -> list[Plugin]:
    """Import every module of the `restoration_bench.models` entry-point group (once); returns those plug-ins."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return [p for p in PLUGINS.values() if p.kind == "entry-point"]
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    found = entry_points(group=ENTRY_POINT_GROUP)
    loaded = []
    for point in found:
        label = f"entry point '{point.name}' ({point.value}) of {point.dist.name if point.dist else 'a package'}"
        before = _registered()
        try:
            point.load()
        except Exception as err:  # a package's code may raise anything: one line naming the entry point
            clash = _clash(str(err))
            reason = (f"model '{clash}' clashes with a model already registered under that name" if clash
                      else f"{type(err).__name__}: {err}")
            raise PluginError(f"{label}: {reason}") from None
        models = sorted(_registered() - before)
        if not models and point.module not in PLUGINS:
            raise PluginError(f"{label} registers no model")
        plugin = PLUGINS.setdefault(point.module, Plugin("entry-point", point.module,
                                                         package=point.dist.name if point.dist else None))
        plugin.models = sorted(set(plugin.models) | set(models))
        loaded.append(plugin)
    return loaded


def preflight(model: str, variant: str = "tiny", **overrides) -> None:
    """Build `model` and check that a forward on a 1x3x64x64 input keeps its shape; PluginError otherwise."""
    import torch

    from zoo.factory import create_model

    plugin = plugin_of(model)
    label = plugin.path or plugin.package or plugin.module if plugin else model
    try:
        network = create_model(model, variant, **overrides).eval()
        with torch.no_grad():
            out = network(torch.rand(*PREFLIGHT_SHAPE))
    except Exception as err:  # a broken builder or forward: one line, before any run is recorded
        raise PluginError(f"{label}: model '{model}' ({variant}) failed a forward on a "
                          f"{'x'.join(map(str, PREFLIGHT_SHAPE))} input: {type(err).__name__}: {err}") from None
    if tuple(out.shape) != PREFLIGHT_SHAPE:
        raise PluginError(f"{label}: model '{model}' ({variant}) turns a {'x'.join(map(str, PREFLIGHT_SHAPE))} input "
                          f"into {'x'.join(map(str, out.shape))}; a restoration model must return the input's shape")
