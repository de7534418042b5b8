"""Protocol views on a leaderboard: which metric prefix a view reads, and how ranks move between views.

Every entry is scored under its setting's protocol and that protocol's colour twin (RGB and Y),
optionally `matlab` too (`harness rescore`); a leaderboard ranks under one of them (`--view`).
The rank-change column compares the shown view with the other colour view, e.g. "Y: +2": the
row climbs two places when ranked on the luma channel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

RANK_CHANGE = "rank_change"


@dataclass(frozen=True)
class View:
    """A leaderboard view: its name, its metric prefix, and the view ranks are compared with."""

    name: str  # rgb | y | matlab
    prefix: str
    other_name: str | None
    other_prefix: str | None


def resolve_view(setting: str, view: str | None) -> View:
    """The view `view` (None: the setting's own) of a registered setting; settings only papers report on have one."""
    from harness.public import SETTINGS, VIEWS, twin, view_name, view_prefix

    if view is not None and view not in VIEWS:
        raise ValueError(f"unknown view '{view}'; valid views: {', '.join(VIEWS)}")
    if setting not in SETTINGS:
        return View(view or "rgb", "", None, None)
    spec = SETTINGS.get(setting)
    own = view_name(spec.protocol)
    name = view or own
    if name not in available_views(setting):  # e.g. an RGB view of greyscale images: no entry can have it
        raise ValueError(f"view '{name}' does not fit setting '{setting}' "
                         f"({'greyscale' if spec.greyscale else 'colour'} images); its views: "
                         f"{', '.join(available_views(setting))}")
    other = twin(spec.protocol)
    colour = other.color if other is not None and other.color in available_views(setting) else None
    if name == own:  # the setting's view is compared with its colour twin's, any other view with the setting's
        other_name = colour
    else:
        other_name = own if own != "matlab" else None
    other_prefix = view_prefix(spec, other_name) if other_name else None
    return View(name, view_prefix(spec, name), other_name, other_prefix)


def available_views(setting: str) -> list[str]:
    """The views entries of a registered `setting` can be ranked under, its own first ([] for a setting
    only papers report on): its protocol's, the colour twin's when it fits the images, and matlab (luma)."""
    from harness.public import SETTINGS, fits, twin, view_name

    if setting not in SETTINGS:
        return []
    spec = SETTINGS.get(setting)
    views = [view_name(spec.protocol)]
    other = twin(spec.protocol)
    if other is not None and fits(spec, other):
        views.append(view_name(other))
    if "matlab" not in views:
        views.append("matlab")
    return views


def rescore_protocol(setting: str, view: str) -> str:
    """The protocol `harness rescore` adds view `view` of a registered `setting` with."""
    from harness.public import SETTINGS, twin

    own = SETTINGS.get(setting).protocol
    other = twin(own)
    return "matlab" if view == "matlab" else (other.name if other is not None and other.color == view else own.name)


def moved(change: str) -> bool:
    """Whether a rank-change cell ('Y: +2', 'RGB: -1', 'Y: +0' or '') says the row changes place."""
    return bool(change) and not change.endswith(": +0")


def rank_changes(board: pd.DataFrame, view: View) -> pd.Series:
    """Per row 'Y: +2' (places gained when ranked under the other view, within its ranking); '' without it."""
    out = pd.Series("", index=board.index, dtype=object)
    if view.other_prefix is None or board.empty:
        return out
    label = view.other_name.upper()
    for _, group in board.groupby("ranking", sort=False):
        other = {i: row.get(view.other_prefix, {}).get("psnr/avg", math.nan) for i, row in group["views"].items()}
        scored = sorted((i for i, v in other.items() if not math.isnan(v)), key=lambda i: -other[i])
        for place, i in enumerate(scored, start=1):
            out[i] = f"{label}: {int(board.at[i, 'rank']) - place:+d}"
    return out


def view_per_image(scores: dict | None, prefix: str) -> dict | None:
    """A run's per-image scores (task -> image -> metric) as seen in the view `prefix`; None when it lacks them."""
    if scores is None or not prefix:
        return scores
    out = {}
    for task, images in scores.items():
        out[task] = {}
        for image, values in images.items():
            if f"{prefix}psnr" not in values:
                return None
            out[task][image] = {m: values[f"{prefix}{m}"] for m in ("psnr", "ssim") if f"{prefix}{m}" in values}
    return out
