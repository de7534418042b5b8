"""`harness score`: score a folder of restored images against a folder of targets.

Images are paired by file name (the same name, else the same stem with another extension),
read as 8- or 16-bit RGB (greyscale is replicated to three channels, an alpha channel is
dropped), scaled to [0, 1] in float64, and scored under a named protocol: per image and the
mean. This is how a method that is not in the zoo is checked with the harness' numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.settings.protocols import MetricProtocol
from harness.scoring.scorers import build_scorers, score_all

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class FolderScores:
    """Per-image values, their means, and the metrics that could not run (with the reason)."""

    protocol: MetricProtocol
    metrics: list[str]
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        """Mean over images of each metric that ran."""
        ran = [m for m in self.metrics if m not in self.missing]
        return {m: float(np.mean([v[m] for v in self.per_image.values()])) for m in ran}


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"'{folder}' is not a folder")
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def pair_folders(pred: Path, target: Path) -> list[tuple[str, Path, Path]]:
    """(name, restored, target) for every restored image; ValueError lists the unpaired ones."""
    restored, targets = _images(pred), _images(target)
    if not restored:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{pred}'")
    by_stem: dict[str, list[Path]] = {}
    for path in targets.values():
        by_stem.setdefault(path.stem, []).append(path)
    pairs, unpaired = [], []
    for name, path in restored.items():
        match = targets.get(name)
        if match is None and len(by_stem.get(path.stem, [])) == 1:
            match = by_stem[path.stem][0]
        if match is None:
            unpaired.append(name)
        else:
            pairs.append((name, path, match))
    if unpaired:
        shown = ", ".join(unpaired[:10]) + (f" and {len(unpaired) - 10} more" if len(unpaired) > 10 else "")
        raise ValueError(f"{len(unpaired)} restored image(s) in '{pred}' have no target of the same name in '{target}': {shown}")
    return pairs


def read_image(path: Path) -> np.ndarray:
    """An image file as an H x W x 3 float64 array in [0, 1] (ValueError names a broken file)."""
    import imageio.v3 as iio

    try:
        array = np.asarray(iio.imread(path))
    except Exception as err:  # decoders raise many kinds (OSError, ValueError, SyntaxError)
        raise ValueError(f"cannot read image '{path}': {err}") from err
    if array.dtype == np.uint8:
        array = array / 255.0
    elif array.dtype == np.uint16:
        array = array / 65535.0
    else:
        raise ValueError(f"image '{path}' has {array.dtype} samples; expected 8- or 16-bit")
    if array.ndim == 3 and array.shape[2] in (2, 4):  # drop alpha (LA, RGBA)
        array = array[..., : array.shape[2] - 1]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image '{path}' has shape {array.shape}; expected one greyscale or RGB image")
    return array


def score_folders(pred: Path, target: Path, metrics: list[str], protocol: MetricProtocol,
                  device: str = "cpu") -> FolderScores:
    """Score every restored image in `pred` against its namesake in `target`."""
    pairs = pair_folders(Path(pred), Path(target))
    scorers, missing = build_scorers(metrics, protocol, device)
    result = FolderScores(protocol, list(scorers) + [m for m in missing], missing=missing)
    for name, restored_path, target_path in pairs:
        restored, reference = read_image(restored_path), read_image(target_path)
        if restored.shape != reference.shape:
            raise ValueError(f"sizes differ: '{restored_path}' is {restored.shape[1]}x{restored.shape[0]}, "
                             f"'{target_path}' is {reference.shape[1]}x{reference.shape[0]}")
        to_batch = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(device)  # noqa: E731
        values = score_all(scorers, to_batch(restored), to_batch(reference), protocol)
        result.per_image[name] = {k: float(v[0]) for k, v in values.items()}
    return result


def render(result: FolderScores, fmt: str) -> str:
    """The scores as 'table', 'csv' or 'json' text."""
    ran = [m for m in result.metrics if m not in result.missing]
    means = result.means()
    if fmt == "json":
        payload: dict[str, Any] = {
            "protocol": {k.removeprefix("protocol."): v for k, v in result.protocol.params().items()},
            "metrics": ran, "images": [{"name": n, **v} for n, v in result.per_image.items()],
            "mean": means, "count": len(result.per_image), "missing": result.missing,
        }
        return json.dumps(payload, indent=2)
    if fmt == "csv":
        rows = ["name," + ",".join(ran)]
        rows += [f"{n}," + ",".join(repr(v[m]) for m in ran) for n, v in result.per_image.items()]
        rows.append("mean," + ",".join(repr(means[m]) for m in ran))
        return "\n".join(rows) + "\n"
    if fmt != "table":
        raise ValueError(f"unknown format '{fmt}'; valid formats: table, csv, json")
    width = max([len(n) for n in result.per_image] + [4])
    header = f"{'image':<{width}}  " + "  ".join(f"{m:>12}" for m in ran)
    lines = [f"protocol {result.protocol.name} v{result.protocol.version} ({result.protocol.color}, "
             f"SSIM {result.protocol.ssim}, border {result.protocol.border})", header]
    lines += [f"{n:<{width}}  " + "  ".join(f"{v[m]:>12.6f}" for m in ran) for n, v in result.per_image.items()]
    lines.append(f"{'mean':<{width}}  " + "  ".join(f"{means[m]:>12.6f}" for m in ran))
    return "\n".join(lines) + "\n"
