"""Eight `harness submit` processes at once, one SQLite tracking store (issue 11: concurrency).

Without the store lock (harness/runs/tracking.py) the processes race to create and migrate the new
database and die with 'duplicate column name' or alembic version errors; the slower of two
creating the setting's experiment fails too.
"""
from __future__ import annotations

import json
import re

import pytest

from conftest import run_harness, start_harness
from leaderboards.runs import finished_runs

from harness.runs import tracking

pytestmark = pytest.mark.slow  # starts Ray: not in the fast tier

SUBMISSIONS = 8


def test_eight_concurrent_submissions_all_finish_and_appear_once(harness_home):
    """Every submission ends FINISHED, and the leaderboard counts each run exactly once."""
    processes = [
        start_harness(["submit", "--model", "nafnet", "--setting", "derain", "--steps", "2", "--seed", str(seed),
                       "--cpus", "1", "--efficiency-size", "0"], harness_home)
        for seed in range(SUBMISSIONS)
    ]
    outputs = [p.communicate(timeout=1200) for p in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stdout[-2000:] + stderr[-4000:]
    run_ids = [re.search(r"MLflow run ([0-9a-f]{32})", out).group(1) for out, _ in outputs]
    assert len(set(run_ids)) == SUBMISSIONS

    uri = f"sqlite:///{harness_home / 'mlflow.db'}"
    runs = finished_runs(tracking.client(uri), "derain")
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert all(r.info.status == "FINISHED" for r in runs)

    board = run_harness(["leaderboard", "--setting", "derain", "--format", "json"], harness_home)
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)["rows"]
    assert [(row["model"], row["runs"]) for row in rows] == [("nafnet", SUBMISSIONS)]
    assert rows[0]["run_id"] in run_ids
