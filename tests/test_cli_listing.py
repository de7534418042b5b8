"""`harness list metrics|protocols|profiles|degradations` and `harness data layout`, in process, against the registries."""
import json
import re

import pytest

from harness.cli import main
from harness.data.degradations import DEGRADATIONS
from harness.data.layouts import LAYOUTS, train_layout
from harness.runs.profiles import PROFILES
from harness.scoring.scorers import SCORERS, pyiqa_names, resolve
from harness.settings import PROTOCOLS, SETTINGS

# The published sizes of five_deg's test sets (what `data layout` must print): SOTS outdoor 500
# (Li et al. 2019, RESIDE), Rain100L 100 (Yang et al. 2017), CBSD68 68 (Martin et al. 2001),
# GoPro test 1,111 (Nah et al. 2017), LOL eval15 15 (Wei et al. 2018).
FIVE_DEG_TEST_SETS = {"SOTS-outdoor": 500, "Rain100L": 100, "BSD68": 68, "GoPro": 1111, "LOL-v1": 15}
LINE = re.compile(r"^<root>/\S+/ .*\((\d+|count not published) (pairs|files); .*\)   \[(?P<name>[^\]]+)\]$")


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    """`list metrics` caches its rows on disk: start from an empty cache, never the user's."""
    monkeypatch.setenv("RESTORATION_BENCH_CACHE", str(tmp_path / "cache"))


def listed(capsys, kind):
    """The rows `harness list KIND --format json` prints, and the names its table starts each line with."""
    assert main(["list", kind, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert main(["list", kind]) == 0
    table = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert table == [r["name"] for r in rows]
    return rows


def test_list_metrics_is_ours_then_every_pyiqa_metric_with_its_direction(capsys):
    rows = listed(capsys, "metrics")
    assert [r["name"] for r in rows] == SCORERS.names() + [f"pyiqa.{n}" for n in pyiqa_names()]
    for row in rows:
        spec = resolve(row["name"])
        assert (row["kind"], row["better"], row["description"]) == (
            spec.kind, "higher" if spec.higher_better else "lower", spec.description)
    by_name = {r["name"]: r for r in rows}
    assert (by_name["psnr"]["kind"], by_name["psnr"]["better"]) == ("fr", "higher")
    assert (by_name["lpips"]["kind"], by_name["lpips"]["better"]) == ("fr", "lower")
    assert (by_name["pyiqa.niqe"]["kind"], by_name["pyiqa.niqe"]["better"]) == ("nr", "lower")
    assert listed(capsys, "metrics") == rows  # the second call reads the cache: the same rows


def test_list_protocols_and_profiles_print_each_entry_of_the_registry(capsys):
    protocols = listed(capsys, "protocols")
    assert [r["name"] for r in protocols] == PROTOCOLS.names()
    for row in protocols:
        entry = PROTOCOLS.get(row["name"])
        assert row == {"name": row["name"], "version": entry.protocol.version, "color": entry.protocol.color,
                       "ssim": entry.protocol.ssim, "border": entry.protocol.border,
                       "quantize": entry.protocol.quantize, "description": entry.description, "source": entry.source}
    # the all-in-one papers' evaluation (PromptIR utils/val_utils.py): RGB, floats, no border
    promptir = next(r for r in protocols if r["name"] == "promptir")
    assert (promptir["color"], promptir["border"], promptir["quantize"]) == ("rgb", 0, False)
    profiles = listed(capsys, "profiles")
    assert [r["name"] for r in profiles] == PROFILES.names()
    for row in profiles:
        profile = PROFILES.get(row["name"])
        assert (row["steps"], row["epochs"], row["batch_size"], row["patch_size"], row["description"]) == (
            None if profile.epochs else profile.steps, profile.epochs, profile.batch_size, profile.patch_size,
            profile.description)


def test_list_degradations_covers_every_kind_a_setting_uses(capsys):
    rows = listed(capsys, "degradations")
    assert [r["name"] for r in rows] == DEGRADATIONS.names()
    assert all(r["description"] and r["description"] == DEGRADATIONS.get(r["name"]).__doc__.splitlines()[0] for r in rows)
    used = {t.degradation.kind for n in SETTINGS for t in (*SETTINGS.get(n).tasks, *SETTINGS.get(n).training_tasks)}
    assert used <= {r["name"] for r in rows}


def layout_lines(capsys, *args):
    """{dataset name: printed count (None: not published)} of `harness data layout`."""
    assert main(["data", "layout", *args]) == 0
    counts = {}
    for line in capsys.readouterr().out.splitlines():
        match = LINE.match(line)
        assert match, line
        count = match.group(1)
        counts[match.group("name")] = None if count == "count not published" else int(count)
    return counts


def test_data_layout_prints_the_published_count_of_every_dataset_a_setting_reads(capsys):
    for name in SETTINGS:
        setting = SETTINGS.get(name)
        tasks = (*setting.tasks, *setting.training_tasks)
        counts = layout_lines(capsys, "--setting", name)
        expected = {t.test_set for t in tasks} | {train_layout(s).name for t in tasks for s in t.train_sets}
        assert set(counts) == expected, name
        assert all(counts[d] == LAYOUTS.get(d).expected for d in counts), name
    five = layout_lines(capsys, "--setting", "five_deg")
    assert {d: five[d] for d in FIVE_DEG_TEST_SETS} == FIVE_DEG_TEST_SETS
    every = layout_lines(capsys)
    assert set(every) >= set(five) and every["Rain-Blur-Noise/rain"] is None  # the ADS slides give no counts
