"""Selectable metrics: LPIPS (random backbone, offline), pyiqa's weightless metrics, missing weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from harness.settings.protocols import get_protocol
from harness.scoring.folders import read_image
from harness.scoring.scorers import build_scorers, parse_metrics, score_all
from zoo.registry import UnknownNameError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # hub lookups fail at once instead of retrying
CALIBRATION = ["I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp"]
# pyiqa's published values on the five pairs its wheel ships (ResultsCalibra/calibration_summary.csv,
# the "(ours)" rows of chaofengc/IQA-PyTorch)
PUBLISHED = {
    "fsim": [0.6891, 0.9702, 0.9927, 0.9575, 0.822],
    "gmsd": [0.2203, 0.0005, 0.0004, 0.1346, 0.205],
    "nlpd": [0.5616, 0.0139, 0.011, 0.3033, 0.4335],
    "piqe": [100.0, 21.6242, 35.8646, 41.147, 76.9485],
}


def to_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()


def calibration_pairs():
    import pyiqa

    root = Path(pyiqa.__file__).parent.parent / "ResultsCalibra"
    return [(to_batch(read_image(root / "dist_dir" / n)), to_batch(read_image(root / "ref_dir" / n))) for n in CALIBRATION]


def test_weightless_pyiqa_metrics_reproduce_published_values():
    scorers, missing = build_scorers(list(PUBLISHED), get_protocol("promptir"))
    assert not missing and list(scorers) == ["psnr", "ssim"] + [f"pyiqa.{n}" for n in PUBLISHED]
    pairs = calibration_pairs()
    for name, published in PUBLISHED.items():
        values = [scorers[f"pyiqa.{name}"](d, r).item() for d, r in pairs]
        np.testing.assert_allclose(values, published, atol=1e-3, err_msg=name)
    assert scorers["pyiqa.piqe"].spec.kind == "nr" and not scorers["pyiqa.piqe"].spec.higher_better


def test_lpips_random_backbone_is_the_lpips_package_and_orders_noise():
    import lpips

    scorers, _ = build_scorers(["lpips"], get_protocol("promptir"), options={"lpips": {"random_weights": True, "seed": 3}})
    torch.manual_seed(3)
    reference = lpips.LPIPS(pretrained=False, pnet_rand=True, verbose=False).eval()
    clean = data.astronaut()[:128, :128].astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    values = []
    for sigma in (0.02, 0.08, 0.25):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)
        ours = scorers["lpips"](to_batch(noisy), to_batch(clean)).item()
        with torch.no_grad():
            theirs = reference(to_batch(noisy), to_batch(clean), normalize=True).item()
        assert ours == pytest.approx(theirs, rel=1e-5)
        values.append(ours)
    assert values[0] < values[1] < values[2]
    assert scorers["lpips"](to_batch(clean), to_batch(clean)).item() == 0.0
    # psnr and ssim come from the protocol in the same call
    both = score_all(scorers, to_batch(noisy), to_batch(clean), get_protocol("promptir"))
    assert set(both) == {"psnr", "ssim", "lpips"} and both["psnr"].item() < 15


def test_missing_weights_are_named_and_recorded_not_scored(tmp_path):
    """A fresh TORCH_HOME: LPIPS and NIQE report the file and folder; PSNR/SSIM still run."""
    pred, target = tmp_path / "pred", tmp_path / "target"
    pred.mkdir(), target.mkdir()
    from skimage.io import imsave

    clean = data.coffee()[:96, :128]
    imsave(target / "coffee.png", clean, check_contrast=False)
    imsave(pred / "coffee.png", np.clip(clean.astype(int) + 9, 0, 255).astype(np.uint8), check_contrast=False)
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"), HF_HUB_OFFLINE="1")
    done = subprocess.run([str(Path(sys.executable).with_name("harness")), "score", "--pred", str(pred), "--target",
                           str(target), "--metrics", "lpips,niqe,gmsd", "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["metrics"] == ["psnr", "ssim", "pyiqa.gmsd"]
    assert set(report["missing"]) == {"lpips", "pyiqa.niqe"}
    alexnet = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(alexnet) in report["missing"]["lpips"] and "harness weights install" in report["missing"]["lpips"]
    assert str(tmp_path / "torch" / "hub" / "pyiqa" / "niqe_modelparameters.mat") in report["missing"]["pyiqa.niqe"]
    assert "lpips" not in report["images"][0] and "lpips" not in report["mean"]
    assert "skipped" in done.stderr and not alexnet.exists()  # nothing was downloaded


def test_metric_names_resolve_or_list_the_valid_ones():
    assert parse_metrics("lpips, fsim,pyiqa.ssim,psnr") == ["psnr", "ssim", "lpips", "pyiqa.fsim", "pyiqa.ssim"]
    assert parse_metrics(None) == ["psnr", "ssim"]
    with pytest.raises(UnknownNameError, match="unknown metric 'lpipz'. Did you mean 'lpips'.*pyiqa.niqe"):
        parse_metrics("lpipz")
