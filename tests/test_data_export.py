"""`harness data export`: the frozen test inputs are the exact degraded images the models see."""
from __future__ import annotations

import hashlib
import json

import numpy as np
from conftest import run_harness
from PIL import Image

from harness.data import open_data
from harness.settings import get_setting


def test_export_writes_every_input_bit_exactly_with_a_manifest(harness_home):
    out = harness_home / "inputs"
    result = run_harness(["data", "export", "--setting", "three_deg", "--out", str(out)], harness_home, timeout=120)
    assert result.returncode == 0, result.stderr
    setting = get_setting("three_deg")
    data = open_data(setting)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["setting"] == "three_deg" and manifest["setting_version"] == setting.version
    assert manifest["fingerprint"] == data.fingerprint() and manifest["data_source"] == "embedded"
    expected = {f"{task}/{pair.name}.png" for task in setting.task_names for pair in data.test_pairs(task)}
    assert set(manifest["files"]) == expected
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert on_disk == expected
    for task in setting.task_names:
        for pair in data.test_pairs(task):
            path = out / task / f"{pair.name}.png"
            assert manifest["files"][f"{task}/{pair.name}.png"] == hashlib.sha256(path.read_bytes()).hexdigest()
            with Image.open(path) as image:
                assert image.mode == "RGB"
                pixels = np.asarray(image, np.float32) / 255.0
            assert np.array_equal(pixels, pair.degraded), path  # the inputs are on the 8-bit grid: no loss


def test_export_without_out_is_refused(harness_home):
    result = run_harness(["data", "export", "--setting", "three_deg"], harness_home, timeout=60)
    assert result.returncode == 2 and "--out DIR" in result.stderr
