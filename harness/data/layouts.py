"""Where each real benchmark lives under `--data-root`, how its files pair up, how many there are.

The tree follows the PromptIR / AirNet family of public code (va1shn9v/PromptIR INSTALL.md and
utils/dataset_utils.py; MoCE-IR for GoPro and LOL-v1), so researchers can point the harness at
the folders they already have:

    <root>/Train/Denoise/            BSD400 + WED clean images (noise is synthesised)
    <root>/Train/Derain/rainy/rain-N.png      -> gt/norain-N.png
    <root>/Train/Dehaze/synthetic/part*/ID_A_beta.jpg -> original/ID.jpg
    <root>/Train/Deblur/GoPro/{input,target}/ same file names
    <root>/Train/LowLight/LOLv1/{low,high}/   same file names
    <root>/Train/DIV2K/              HyperRes training images
    <root>/test/denoise/bsd68/  test/denoise/urban100/
    <root>/test/derain/Rain100L/input/rain-N.png -> target/norain-N.png
    <root>/test/dehaze/input/ID_A_beta.jpg    -> target/ID.png     (SOTS outdoor)
    <root>/test/deblur/GoPro/{input,target}/  same file names
    <root>/test/lowlight/LOLv1/{low,high}/    same file names
    <root>/test/dejpeg/LIVE1/   test/sr/Set5/
    <root>/ADS/RainBlurNoise/{train,test}/{rain,blur,noise}/{input,target}/   same file names
    <root>/ADS/RainSnowHaze/{train,test}/{rain,snow,haze}/{input,target}/     same file names

Expected counts are those of the published datasets (cited per entry); a tree with other
counts is reported (a subset changes the numbers) but can still be used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zoo.registry import Registry

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Layout:
    """One dataset split on disk: clean images, optional degraded ones, and the pairing rule."""

    name: str
    clean_dir: str  # relative to the data root; globbed recursively when `degraded_dir` is None
    degraded_dir: str | None = None  # None: the degradation is synthesised from the clean image
    # degraded file path relative to degraded_dir -> clean file path relative to clean_dir
    pair: Callable[[str], str] | None = None
    expected: int | None = None
    source: str = ""

    def describe(self) -> str:
        """One line of the expected tree."""
        count = self.expected if self.expected is not None else "count not published"
        if self.degraded_dir is None:
            return f"{self.clean_dir}/   clean images, degradation synthesised ({count} files; {self.source})"
        return (f"{self.degraded_dir}/ -> {self.clean_dir}/   ({count} pairs; {self.source})")


def same_name(path: str) -> str:
    """Degraded and clean files share their name."""
    return path


def rain_to_norain(path: str) -> str:
    """Rain100L: rain-12.png pairs with norain-12.png (PromptIR dataset_utils.py)."""
    name = Path(path).name
    if not name.startswith("rain-"):
        raise ValueError(f"'{name}' does not follow Rain100L's rain-N naming")
    return "norain-" + name[len("rain-"):]


def hazy_to_clear(suffix: str) -> Callable[[str], str]:
    """RESIDE: ID_A_beta.jpg pairs with ID<suffix> (the part before the first underscore)."""

    def rule(path: str) -> str:
        name = Path(path).name
        match = re.match(r"^([^_]+)_", name)
        if not match:
            raise ValueError(f"'{name}' does not follow RESIDE's ID_A_beta naming")
        return match.group(1) + suffix

    rule.__doc__ = f"RESIDE: ID_A_beta.* -> ID{suffix}"
    return rule


LAYOUTS: Registry[Layout] = Registry("dataset")
for _layout in (
    # ----- test splits
    Layout("BSD68", "test/denoise/bsd68", expected=68, source="CBSD68, PromptIR test/denoise/bsd68"),
    Layout("CBSD68", "test/denoise/bsd68", expected=68, source="HyperRes Sec. 4.2; same folder as BSD68"),
    Layout("Urban100", "test/denoise/urban100", expected=100, source="Huang et al. 2015; PromptIR test/denoise/urban100"),
    Layout("Rain100L", "test/derain/Rain100L/target", "test/derain/Rain100L/input", rain_to_norain, 100,
           "Yang et al. 2017; PromptIR test/derain"),
    Layout("SOTS-outdoor", "test/dehaze/target", "test/dehaze/input", hazy_to_clear(".png"), 500,
           "RESIDE SOTS outdoor; PromptIR test/dehaze"),
    Layout("GoPro", "test/deblur/GoPro/target", "test/deblur/GoPro/input", same_name, 1111,
           "Nah et al. 2017 test split; MoCE-IR GoPro/test"),
    Layout("LOL-v1", "test/lowlight/LOLv1/high", "test/lowlight/LOLv1/low", same_name, 15,
           "Wei et al. 2018 eval15; MoCE-IR LOLv1/Test"),
    Layout("LIVE1", "test/dejpeg/LIVE1", expected=29, source="HyperRes Sec. 4.2 (LIVE1, 29 images)"),
    Layout("Set5", "test/sr/Set5", expected=5, source="HyperRes Sec. 4.2 (Set5)"),
    # ----- training splits (named "<dataset>:train")
    Layout("BSD400+WED:train", "Train/Denoise", expected=5144,
           source="400 BSD400 + 4,744 WED images, PromptIR data/Train/Denoise"),
    Layout("Rain100L:train", "Train/Derain/gt", "Train/Derain/rainy", rain_to_norain, 200,
           "Rain100L train, PromptIR data/Train/Derain"),
    Layout("RESIDE-OTS:train", "Train/Dehaze/original", "Train/Dehaze/synthetic", hazy_to_clear(".jpg"), 72135,
           "RESIDE OTS, PromptIR data/Train/Dehaze"),
    Layout("GoPro:train", "Train/Deblur/GoPro/target", "Train/Deblur/GoPro/input", same_name, 2103,
           "Nah et al. 2017 train split"),
    Layout("LOL-v1:train", "Train/LowLight/LOLv1/high", "Train/LowLight/LOLv1/low", same_name, 485,
           "Wei et al. 2018 our485"),
    Layout("DIV2K:train", "Train/DIV2K", expected=800, source="HyperRes Sec. 4.1 (800 DIV2K training images)"),
):
    LAYOUTS.add(_layout.name, _layout)

# ADS' two settings (seed 002, "Experiments dataset"): one folder per degradation, degraded and
# clean images with the same names. The slides give no image counts, so none are expected.
for _dataset, _folder, _kinds in (("Rain-Blur-Noise", "RainBlurNoise", ("rain", "blur", "noise")),
                                  ("Rain-Snow-Haze", "RainSnowHaze", ("rain", "snow", "haze"))):
    for _kind in _kinds:
        for _split, _suffix in (("test", ""), ("train", ":train")):
            _base = f"ADS/{_folder}/{_split}/{_kind}"
            LAYOUTS.add(f"{_dataset}/{_kind}{_suffix}",
                        Layout(f"{_dataset}/{_kind}{_suffix}", f"{_base}/target", f"{_base}/input", same_name,
                               None, f"ADS slides (CVPR 2023), {_dataset} {_kind} {_split} pairs"))

#: the settings name training sets individually; some share one folder on disk
TRAIN_ALIASES = {"BSD400": "BSD400+WED:train", "WED": "BSD400+WED:train"}


def train_layout(name: str) -> Layout:
    """The layout of training set `name` as a setting names it (e.g. "BSD400", "Rain100L")."""
    return LAYOUTS.get(TRAIN_ALIASES.get(name, f"{name}:train"))


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by relative path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class FilePair:
    """A degraded file (None: synthesised) and its clean target."""

    name: str
    degraded: Path | None
    target: Path


def pairs_of(layout: Layout, root: Path) -> tuple[list[FilePair], list[str]]:
    """The layout's pairs under `root`, and the problems met while pairing (missing targets...)."""
    problems: list[str] = []
    clean_root = root / layout.clean_dir
    if not clean_root.is_dir():
        return [], [f"{layout.name}: folder {clean_root} is missing"]
    if layout.degraded_dir is None:
        return [FilePair(str(p.relative_to(clean_root)), None, p) for p in list_images(clean_root)], problems
    degraded_root = root / layout.degraded_dir
    if not degraded_root.is_dir():
        return [], [f"{layout.name}: folder {degraded_root} is missing"]
    pairs = []
    for degraded in list_images(degraded_root):
        relative = str(degraded.relative_to(degraded_root))
        try:
            target = clean_root / layout.pair(relative)
        except ValueError as err:
            problems.append(f"{layout.name}: {degraded}: {err}")
            continue
        if not target.is_file():
            problems.append(f"{layout.name}: {degraded} has no target: expected {target}")
            continue
        pairs.append(FilePair(relative, degraded, target))
    return pairs, problems
