"""Protocol views: the same restored images scored under several protocols, side by side.

A setting's own protocol is its main view and logs unprefixed metrics (`psnr/derain`); its
colour twin (`promptir` <-> `promptir_y`) is logged under `y/` (or `rgb/` when the setting's
own protocol is the luma one), `matlab` under `matlab/`, any other protocol under `<name>/`.
Each view records its protocol as `<prefix>protocol.<field>` params (the main view: `protocol.*`)
and the version it was last scored at as the tag `<prefix>protocol.scored`.
"""
from __future__ import annotations

import dataclasses

from harness.settings.protocols import PROTOCOLS, MetricProtocol, get_protocol

VIEWS = ("rgb", "y", "matlab")  # the names `harness leaderboard --view` takes
MATLAB = "matlab"
SCORED_TAG = "protocol.scored"  # tag (after the view's prefix): "<name> v<version>" it was last scored at


def twin(protocol: MetricProtocol) -> MetricProtocol | None:
    """The protocol's other colour space: promptir <-> promptir_y, wang <-> wang_y (None for matlab)."""
    name = protocol.name
    if name == MATLAB:
        return None
    other = name[:-2] if name.endswith("_y") else f"{name}_y"
    if name in PROTOCOLS and other in PROTOCOLS:
        return get_protocol(other)
    color = "rgb" if protocol.color == "y" else "y"
    return dataclasses.replace(protocol, name=f"{name}+{color}", color=color, round_y=False)


def view_name(protocol: MetricProtocol) -> str:
    """'matlab' for the MATLAB protocol, else the protocol's colour space ('rgb' or 'y')."""
    return MATLAB if protocol.name == MATLAB else protocol.color


def fits(setting, protocol: MetricProtocol) -> bool:
    """Whether `protocol` can score `setting`: an RGB view of greyscale images cannot."""
    return not (setting.greyscale and protocol.color == "rgb")


def check_fits(setting, protocol: MetricProtocol) -> None:
    """ValueError when `protocol`'s colour space does not fit `setting`'s images."""
    if not fits(setting, protocol):
        luma = ", ".join(n for n in PROTOCOLS.names() if PROTOCOLS.get(n).protocol.color == "y")
        raise ValueError(f"protocol '{protocol.name}' scores RGB, but setting '{setting.name}' holds greyscale "
                         f"images; use a luma protocol ({luma})")


def prefix(setting, protocol: MetricProtocol) -> str:
    """The metric namespace of `protocol` on `setting`: '' (its own), 'y/' or 'rgb/' (twin), 'matlab/', '<name>/'."""
    own = setting.protocol
    if protocol.name == own.name:
        return ""
    other = twin(own)
    if other is not None and protocol.name == other.name:
        return f"{view_name(other)}/"
    return f"{protocol.name}/"


def view_prefix(setting, view: str) -> str:
    """The namespace `harness leaderboard --view rgb|y|matlab` reads on `setting`."""
    if view not in VIEWS:
        raise ValueError(f"unknown view '{view}'; valid views: {', '.join(VIEWS)}")
    if view == view_name(setting.protocol):
        return ""
    return f"{view}/"


def default_views(setting) -> dict[str, MetricProtocol]:
    """Prefix -> protocol of the views every entry is scored under: its own and its fitting twin."""
    views = {"": setting.protocol}
    other = twin(setting.protocol)
    if other is not None and fits(setting, other):
        views[prefix(setting, other)] = other
    return views


def protocol_params(prefix_: str, protocol: MetricProtocol) -> dict[str, str]:
    """`<prefix>protocol.<field>` params of one view."""
    return {f"{prefix_}protocol.{k}": str(v) for k, v in dataclasses.asdict(protocol).items()}


def scored_tag(prefix_: str, protocol: MetricProtocol) -> dict[str, str]:
    """The tag saying which protocol version a view was last scored at."""
    return {f"{prefix_}{SCORED_TAG}": f"{protocol.name} v{protocol.version}"}


def recorded_views(params: dict[str, str], tags: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Prefix -> (protocol name, version last scored) of every view a run records."""
    views = {}
    for key, name in params.items():
        if not key.endswith("protocol.name"):
            continue
        p = key[: -len("protocol.name")]
        version = int(params.get(f"{p}protocol.version", "0"))
        scored = tags.get(f"{p}{SCORED_TAG}", "")
        if scored.startswith(f"{name} v"):
            version = int(scored.rsplit("v", 1)[1])
        views[p] = (name, version)
    return views
