"""A benchmark tree on disk: the folders a setting reads, and their validation (`harness data`).

Reads files with PIL and nothing heavier, so `harness data layout` and `harness data check`
answer without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.data.layouts import LAYOUTS, Layout, pairs_of, train_layout
from harness.settings import SETTINGS, Setting


class BadImageError(ValueError):
    """An image file that cannot be used, with the file named."""


def inspect_image(path: Path) -> tuple[int, int]:
    """(width, height) of an 8-bit RGB image file; BadImageError naming the file otherwise."""
    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise BadImageError(f"{path}: cannot be decoded as an image ({err})") from err
    if mode != "RGB":
        kind = {"L": "greyscale", "LA": "greyscale with alpha", "RGBA": "RGB with alpha", "P": "palette",
                "I;16": "16-bit", "I;16B": "16-bit", "I": "32-bit integer", "F": "floating-point"}.get(mode, mode)
        raise BadImageError(f"{path}: is a {kind} image (mode {mode}); expected 8-bit RGB")
    return size


def load_rgb(path: Path) -> np.ndarray:
    """An 8-bit RGB image file as H x W x 3 float32 in [0, 1] (checked by `inspect_image`)."""
    inspect_image(path)
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float32) / 255.0


@dataclass
class CheckReport:
    """What `harness data check` found: problems fail the check, notes only inform."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def layouts_for(setting: Setting | None) -> list[Layout]:
    """Every dataset `setting` reads (test and training), or those of every setting."""
    settings = [setting] if setting else [SETTINGS.get(n) for n in SETTINGS]
    names: dict[str, Layout] = {}
    for s in settings:
        for task in (*s.tasks, *s.training_tasks):
            test = LAYOUTS.get(task.test_set)
            names[test.name] = test
            for train_set in task.train_sets:
                layout = train_layout(train_set)
                names[layout.name] = layout
    return list(names.values())


def check_tree(root: Path, setting: Setting | None = None, decode: bool = True) -> CheckReport:
    """Validate the datasets of `setting` under `root`: folders, pairing, decoding, sizes, counts."""
    report = CheckReport()
    if not root.is_dir():
        report.problems.append(f"data root {root} is not a folder")
        return report
    for layout in layouts_for(setting):
        pairs, problems = pairs_of(layout, root)
        report.problems += problems
        report.counts[layout.name] = len(pairs)
        if not pairs and not problems:
            report.problems.append(f"{layout.name}: no images in {root / layout.clean_dir}")
        if pairs and layout.expected and len(pairs) != layout.expected:
            report.notes.append(f"{layout.name}: {len(pairs)} {'pairs' if layout.degraded_dir else 'images'}, "
                                f"the published dataset has {layout.expected} ({layout.source})")
        if not decode:
            continue
        for pair in pairs:
            try:
                target_size = inspect_image(pair.target)
                if pair.degraded is not None:
                    degraded_size = inspect_image(pair.degraded)
                    if degraded_size != target_size:
                        report.problems.append(f"{layout.name}: {pair.degraded} is {degraded_size[0]}x{degraded_size[1]} "
                                               f"but its target {pair.target} is {target_size[0]}x{target_size[1]}")
            except BadImageError as err:
                report.problems.append(f"{layout.name}: {err}")
    return report


def expected_tree(setting: Setting | None = None) -> str:
    """The folders (and counts) the datasets of `setting` are read from."""
    return "\n".join(f"<root>/{layout.describe()}   [{layout.name}]" for layout in layouts_for(setting))
