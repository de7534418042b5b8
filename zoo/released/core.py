"""The registry of released-checkpoint adapters and the strict loader they share.

An adapter turns the authors' public constructor arguments into a zoo model and the authors'
state_dict keys into the zoo's. Loading is strict: every model tensor is filled and every
checkpoint tensor is used, except keys an adapter documents as unused; a mismatch is refused
with the first missing and unexpected keys and the likely cause.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import Tensor

from zoo.contract import RestorationModel
from zoo.registry import Registry
from zoo.released.containers import CheckpointReadError, read_state_dict


class ReleasedWeightsError(ValueError):
    """Released weights that do not fit the requested model; the message says why and what to pass."""


@dataclass(frozen=True)
class Release:
    """How one zoo model reads the checkpoints its authors released."""

    name: str  # the zoo model name
    build: Callable[..., RestorationModel]  # (**public_args) -> zoo model, eval mode not required
    public_code: str  # "owner/repo path/to/file.py" the keys and arguments come from
    rename: Callable[[str], str | None]  # public key -> zoo key; None drops a documented unused key
    signature: Callable[[set[str]], bool]  # does a key set look like this family's checkpoints?
    diagnose: Callable[[Mapping[str, Tensor], dict[str, Any]], str | None] = lambda state, args: None
    # a loader that replaces the standard one (HyperRes reads a second file for its estimator)
    load: Callable[..., RestorationModel] | None = None
    files: tuple[str, ...] = field(default_factory=tuple)  # the authors' published file names

    def public_defaults(self) -> dict[str, Any]:
        """The public constructor arguments and their defaults (each release's main configuration)."""
        target = self.load or self.build
        params = inspect.signature(target).parameters.values()
        return {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY or
                (p.default is not inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD)}


RELEASES: Registry[Release] = Registry("released model")


def register_release(name: str, *, public_code: str, rename: Callable[[str], str | None],
                     signature: Callable[[set[str]], bool], diagnose=None, load=None, files=()):
    """Decorator on a builder ``(**public_args) -> RestorationModel``: register `name`'s releases."""

    def wrap(build: Callable[..., RestorationModel]):
        RELEASES.add(name, Release(name, build, public_code, rename, signature,
                                   diagnose or (lambda state, args: None), load, tuple(files)))
        return build

    return wrap


def load_released(name: str, path: str | Path | None, **public_args: Any) -> RestorationModel:
    """Build zoo model `name` from its authors' constructor arguments and load their released weights."""
    release = RELEASES.get(name)
    if release.load is not None:
        model = release.load(path, **public_args)
    else:
        if path is None:
            raise ReleasedWeightsError(f"{name}: a weights file is required")
        state = read_state_dict(path)
        model = build_model(release, public_args)
        load_strict(release, model, state, public_args, source=Path(path))
    return model.eval()


def build_model(release: Release, public_args: dict[str, Any]) -> RestorationModel:
    """Call the adapter's builder; an argument its public constructor lacks is named with the valid ones."""
    accepted = release.public_defaults()
    unknown = sorted(set(public_args) - set(accepted))
    if unknown:
        raise ReleasedWeightsError(
            f"{release.name}: unknown public argument(s) {unknown}; {release.public_code} takes {sorted(accepted)}")
    return release.build(**{k: v for k, v in public_args.items() if k in inspect.signature(release.build).parameters})


def load_strict(release: Release, model: RestorationModel, state: Mapping[str, Tensor],
                public_args: dict[str, Any], source: Path, prefix: str = "") -> None:
    """Rename `state` to zoo keys and load it into `model` (or its sub-module `prefix`), refusing any mismatch."""
    renamed: dict[str, Tensor] = {}
    for key, tensor in state.items():
        target = release.rename(key)
        if target is not None:
            renamed[prefix + target] = tensor
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    missing = [k for k in expected if k not in renamed]
    unexpected = [k for k in renamed if k not in expected]
    wrong_shape = [k for k in renamed if k in expected and renamed[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        raise ReleasedWeightsError(_mismatch_message(release, state, public_args, source, missing,
                                                     unexpected, wrong_shape, renamed, expected))
    model.load_state_dict({**model.state_dict(), **renamed}, strict=True)


def _mismatch_message(release, state, public_args, source, missing, unexpected, wrong_shape, renamed, expected) -> str:
    lines = [f"{source} does not fit {release.name} with {public_args or 'the default arguments'}:"]
    if missing:
        lines.append(f"  {len(missing)} model tensor(s) missing from the file, first {missing[0]}")
    if unexpected:
        lines.append(f"  {len(unexpected)} file tensor(s) the model has no place for, first {unexpected[0]}")
    if wrong_shape:
        key = wrong_shape[0]
        lines.append(f"  {len(wrong_shape)} shape mismatch(es), first {key}: file {tuple(renamed[key].shape)}, "
                     f"model {tuple(expected[key].shape)} (a width or depth argument that differs from the release?)")
    # A file of another family first: the requested family's diagnosis assumes its own keys.
    hint = _other_family(release, set(state)) or release.diagnose(state, public_args)
    if hint:
        lines.append(f"  likely cause: {hint}")
    return "\n".join(lines)


def _other_family(release: Release, keys: set[str]) -> str | None:
    """Name the family a checkpoint belongs to when it is not the one asked for."""
    if release.signature(keys):
        return None
    for other in RELEASES.names():
        if other != release.name and RELEASES.get(other).signature(keys):
            return f"this looks like a {other} checkpoint, not a {release.name} one (try --model {other})"
    return None


__all__ = ["CheckpointReadError", "RELEASES", "Release", "ReleasedWeightsError", "load_released", "register_release"]
