"""The papers' reported numbers (leaderboards/reported/): complete, well-formed, and served by the CLI."""
import json

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.settings import SETTINGS
from leaderboards.reported import index, read_table, reported_values, tables, task_level
from zoo import MODELS

RANGES = {"psnr": (10.0, 60.0), "ssim": (0.0, 1.0)}


def normalise(test_set: str) -> str:
    """Test-set names compared loosely: case, punctuation and the C of colour BSD68 ignored."""
    name = "".join(ch for ch in test_set.lower() if ch.isalnum())
    return {"cbsd68": "bsd68", "sots": "sotsoutdoor", "lolv1": "lolv1"}.get(name, name)


def test_every_table_named_in_the_issue_is_stored():
    cited = {t.citation for t in tables()}
    expected = {f"HAIR Tab. {n}" for n in ("1", "2", "3a", "3b", "3c", "4")}
    expected |= {f"DaAIR Tab. {n}" for n in ("1", "2", "3")}
    expected |= {f"HyperRes Tab. {n}" for n in ("1", "2", "3", "4", "6", "7")}
    expected |= {"ADS slide filter locations", "ADS slide Rain-Blur-Noise", "ADS slide Rain-Snow-Haze"}
    assert cited == expected


def test_every_value_is_a_number_in_range_of_a_known_metric():
    values = reported_values()
    assert set(values["metric"]) == {"psnr", "ssim"}
    assert values["value"].map(np.isfinite).all()
    for metric, (low, high) in RANGES.items():
        chosen = values.loc[values["metric"] == metric, "value"]
        assert chosen.between(low, high).all(), chosen[~chosen.between(low, high)]
    params = values["params_m"].dropna()
    assert params.between(0.5, 100).all()


def test_every_csv_column_is_declared_and_every_row_complete():
    for table in tables():
        frame = read_table(table)
        keys = {t.key for t in table.tasks} | {"avg"}
        assert list(frame.columns[:3]) == ["method", "model", "params_m"] and frame.columns[-1] == "note"
        value_columns = [c for c in frame.columns if "/" in c]
        assert value_columns, table.id
        for column in value_columns:
            metric, key = column.split("/", 1)
            assert metric in RANGES and key in keys, f"{table.id}: undeclared column {column}"
        # every row gives every value column of its table: an empty cell would be a lost number
        assert not frame[value_columns].isna().any().any(), table.id
        assert frame["method"].str.len().gt(0).all() and not frame["method"].duplicated().any(), table.id


def test_every_row_reports_on_a_known_setting_task_and_test_set():
    pending = index()["unregistered_settings"]
    for table in tables():
        if table.setting not in SETTINGS:
            assert table.setting in pending, f"{table.id}: unknown setting {table.setting}"
            continue
        # registered: strict. Every column is a task of the setting (by level for continuous settings).
        setting = SETTINGS.get(table.setting)
        used = {c.split("/", 1)[1] for c in read_table(table).columns if "/" in c} - {"avg"}
        for ref in table.tasks:
            if ref.key not in used:
                continue
            if ref.level is not None:
                matches = [t for t in setting.tasks if task_level(t) == ref.level]
                assert matches, f"{table.id}: {table.setting} has no task at level {ref.level:g}"
                task = matches[0]
            else:
                task = next((t for t in setting.tasks if t.name == ref.key), None)
                assert task is not None, f"{table.id}: {table.setting} has no task {ref.key}"
            assert normalise(task.test_set) == normalise(ref.test_set), (table.id, ref.key, task.test_set)
    values = reported_values()
    assert values["task"].notna().all()


def test_every_model_is_a_zoo_model_or_declared_pending():
    pending = set(index()["unregistered_models"])
    models = set(reported_values()["model"].dropna())
    assert models <= set(MODELS.names()) | pending, models - set(MODELS.names()) - pending
    assert {"res_hair", "restormer", "promptir", "nafnet"} <= models


def test_printed_averages_match_the_mean_of_the_printed_tasks():
    """A transcription check: a typo in one value moves the mean away from the printed Average."""
    known = {(m["table"], m["method"]) for m in index()["average_mismatches"]}
    values = reported_values()
    found = set()
    for (table, method, metric), group in values.groupby(["table", "method", "metric"]):
        average = group.loc[group["key"] == "avg", "value"]
        tasks = group.loc[group["key"] != "avg", "value"]
        if average.empty:
            continue
        tolerance = 0.0151 if metric == "psnr" else 0.0016  # rounding of the tasks and of the average
        if abs(tasks.mean() - average.iloc[0]) > tolerance:
            found.add((table, method))
    assert found == known


def test_hyperres_distance_row_equals_baseline_minus_ours():
    """HyperRes Tab. 1 and 4 print Distance (Ours) = Baseline - Ours (from unrounded values, so within 0.01)."""
    printed = {"hyperres_tab1": ((5, 15, 25, 35, 45, 55, 65, 75, 85), [0.52, 0.06, 0.01, 0.01, 0, 0, 0, 0, 0]),
               "hyperres_tab4": ((5, 10, 80, 85, 90), [0.52, 0.13, 0, 0, 0.02])}
    for table_id, (levels, distance) in printed.items():
        frame = read_table(next(t for t in tables() if t.id == table_id)).set_index("method")
        columns = [f"psnr/sigma_{s}" for s in levels]
        computed = (frame.loc["Baseline", columns] - frame.loc["Ours", columns]).to_numpy(float)
        np.testing.assert_allclose(computed, distance, atol=0.0101)


def _cli_json(capsys, args):
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("setting,tables_expected,ours", [
    ("five_deg", {"HAIR Tab. 2": 12, "HAIR Tab. 4": 9, "DaAIR Tab. 2": 10}, ("Res-HAIR (ours)", "HAIR Tab. 2", 30.62, 0.978)),
    ("three_deg", {"HAIR Tab. 1": 10, "DaAIR Tab. 1": 8}, ("Res-HAIR (ours)", "HAIR Tab. 1", 30.98, 0.979)),
])
def test_cli_reported_rows_of_a_setting(capsys, tmp_path, setting, tables_expected, ours):
    board = _cli_json(capsys, ["leaderboard", "--setting", setting, "--source", "reported", "--format", "json",
                               "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    rows = board["rows"]
    assert {r["source"] for r in rows} == {"reported"} and all(r["rank"] is None for r in rows)
    assert pd.Series([r["citation"] for r in rows]).value_counts().to_dict() == tables_expected
    method, citation, dehaze_psnr, dehaze_ssim = ours
    (row,) = [r for r in rows if r["method"] == method and r["citation"] == citation]
    assert row["model"] == "res_hair" and row["params"] == 29_000_000
    assert row["tasks"]["dehaze"] == {"psnr": dehaze_psnr, "ssim": dehaze_ssim}
    assert set(row["tasks"]) == set(SETTINGS.get(setting).task_names)
    daair = next(r for r in rows if r["method"] == "DaAIR (ours)")
    assert daair["average"]["psnr"] == {"five_deg": 30.24, "three_deg": 32.51}[setting]
    assert not (tmp_path / "none.db").exists()  # reported rows need no tracking store


def test_cli_reported_rows_of_a_setting_only_the_papers_report(capsys, tmp_path):
    board = _cli_json(capsys, ["leaderboard", "--setting", "rain_blur_noise", "--source", "reported",
                               "--format", "json", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    assert board["version"] == 1 and board["tasks"] == ["rain", "blur", "noise"]
    airnet = [r for r in board["rows"] if r["method"] == "AirNet"]
    assert airnet[0]["average"]["psnr"] == 29.13 and airnet[0]["tasks"]["blur"]["ssim"] is None


def test_cli_markdown_and_csv_of_reported_rows(capsys, tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["leaderboard", "--setting", "derain", "--source", "reported", "--format", "markdown",
                 "--tracking-uri", uri]) == 0
    text = capsys.readouterr().out
    assert "| HAIR Tab. 3b | Res-HAIR (ours) | res_hair | - | rgb | - | - | 39.00 | 0.985 |" in text
    assert main(["leaderboard", "--setting", "derain", "--source", "reported", "--format", "csv", "--tracking-uri", uri]) == 0
    frame = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(frame.columns[:3]) == ["rank", "model", "variant"] and len(frame) == 9
    assert frame.loc[frame["method"] == "UMR", "psnr/derain"].item() == 32.39
