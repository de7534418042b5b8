"""`harness score`: two folders of real photographs give scikit-image's numbers per image."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.io import imsave
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness.data.degradations import degrade

from harness.cli import main


class Done:
    """What a `harness` command printed and returned (run in-process: same parser, same code)."""

    def __init__(self, args: tuple[str, ...]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            self.returncode = main(list(args))
        self.stdout, self.stderr = out.getvalue(), err.getvalue()


def harness(*args: str) -> Done:
    return Done(args)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Restored (degraded) and target photographs as 8-bit PNGs, one greyscale, one 16-bit."""
    root = tmp_path_factory.mktemp("score")
    pred, target = root / "pred", root / "target"
    pred.mkdir(), target.mkdir()
    rng = np.random.default_rng(0)
    for name, kind in [("astronaut", "gaussian_noise"), ("coffee", "motion_blur"), ("chelsea", "haze")]:
        clean = getattr(data, name)()[:160, :200]
        degraded = degrade(kind, clean.astype(np.float32) / 255, rng, **({"sigma": 25} if kind == "gaussian_noise" else {}))
        imsave(target / f"{name}.png", clean, check_contrast=False)
        imsave(pred / f"{name}.png", (np.clip(degraded, 0, 1) * 255).round().astype(np.uint8), check_contrast=False)
    camera = data.camera()[:128, :128]
    imsave(target / "camera.png", camera, check_contrast=False)  # greyscale
    imsave(pred / "camera.png", np.clip(camera.astype(int) + rng.integers(-20, 21, camera.shape), 0, 255).astype(np.uint8),
           check_contrast=False)
    rocket = data.rocket()[:96, :96].astype(np.uint16) * 257  # 16-bit target
    imsave(target / "rocket.tif", rocket, check_contrast=False)
    imsave(pred / "rocket.tif", np.clip(rocket.astype(int) + rng.integers(-900, 901, rocket.shape), 0, 65535).astype(np.uint16),
           check_contrast=False)
    return pred, target


def reference(pred: Path, target: Path, y: bool = False) -> dict[str, tuple[float, float]]:
    out = {}
    for path in sorted(pred.iterdir()):
        scale = 65535.0 if path.suffix == ".tif" else 255.0
        x, t = (np.asarray(__import__("imageio.v3").v3.imread(p), dtype=np.float64) / scale for p in (path, target / path.name))
        if x.ndim == 2:
            x, t = np.repeat(x[..., None], 3, 2), np.repeat(t[..., None], 3, 2)
        if y:
            x, t = rgb2ycbcr(x)[..., 0] / 255, rgb2ycbcr(t)[..., 0] / 255
        out[path.name] = (peak_signal_noise_ratio(t, x, data_range=1.0),
                          structural_similarity(t, x, data_range=1.0, channel_axis=None if y else 2))
    return out


@pytest.mark.parametrize("protocol", ["promptir", "promptir_y"])
def test_score_two_folders_equals_scikit_image_per_image(folders, protocol):
    pred, target = folders
    done = harness("score", "--pred", str(pred), "--target", str(target), "--protocol", protocol, "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    expected = reference(pred, target, y=protocol == "promptir_y")
    assert [row["name"] for row in report["images"]] == sorted(expected) and report["count"] == 5
    for row in report["images"]:
        assert row["psnr"] == pytest.approx(expected[row["name"]][0], abs=1e-9)
        assert row["ssim"] == pytest.approx(expected[row["name"]][1], abs=1e-10)
    assert report["mean"]["ssim"] == pytest.approx(np.mean([v[1] for v in expected.values()]), abs=1e-10)
    assert report["protocol"]["name"] == protocol

    table = harness("score", "--pred", str(pred), "--target", str(target), "--protocol", protocol).stdout
    assert f"protocol {protocol} v1" in table and "mean" in table.splitlines()[-1]
    csv = harness("score", "--pred", str(pred), "--target", str(target), "--protocol", protocol, "--format", "csv").stdout
    assert csv.splitlines()[0] == "name,psnr,ssim" and len(csv.splitlines()) == 7


def test_score_errors_name_the_files(folders, tmp_path):
    pred, target = folders
    lone = tmp_path / "lone"
    lone.mkdir()
    imsave(lone / "astronaut.png", data.astronaut()[:50, :50], check_contrast=False)
    imsave(lone / "unpaired.png", data.astronaut()[:50, :50], check_contrast=False)
    done = harness("score", "--pred", str(lone), "--target", str(target))
    assert done.returncode == 2 and "have no target of the same name" in done.stderr and "unpaired.png" in done.stderr
    (lone / "unpaired.png").unlink()
    done = harness("score", "--pred", str(lone), "--target", str(target))
    assert done.returncode == 2 and "sizes differ" in done.stderr
    assert str(lone / "astronaut.png") in done.stderr and str(target / "astronaut.png") in done.stderr
    (lone / "astronaut.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    done = harness("score", "--pred", str(lone), "--target", str(target))
    assert done.returncode == 2 and f"cannot read image '{lone / 'astronaut.png'}'" in done.stderr
    done = harness("score", "--pred", str(pred), "--target", str(target), "--protocol", "matlb")
    assert done.returncode == 2 and "Did you mean 'matlab'" in done.stderr
