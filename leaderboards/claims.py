"""Claims that have run (`harness claims run`), read back from MLflow: one row per comparison of each finished claim run."""
from __future__ import annotations

import pandas as pd

from harness.public import CLAIM_EXPERIMENT, CLAIM_ROLE


def claim_rows(client) -> pd.DataFrame:
    """Every FINISHED claim run's comparisons (newest first): claim, budget, seeds, paper, ours, intervals, verdict."""
    experiment = client.get_experiment_by_name(f"restoration-bench/{CLAIM_EXPERIMENT}")
    if experiment is None:
        return pd.DataFrame()
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"attributes.status = 'FINISHED' and tags.role = '{CLAIM_ROLE}'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        count = len([k for k in tags if k.startswith("comparison") and k.endswith(".verdict")])
        for i in range(count):
            key = f"comparison{i}"
            rows.append({
                "claim": tags.get("claim"), "paper": tags.get("claim.paper"), "comparison": tags.get(f"{key}.label"),
                "budget": tags.get("budget"), "seeds": len(tags.get("seeds", "").split(",")),
                "paper dB": metrics.get(f"{key}.paper"), "ours dB": metrics.get(f"{key}.ours"),
                "seeds CI": _interval(metrics, f"{key}.seeds"), "images CI": _interval(metrics, f"{key}.images"),
                "verdict": tags.get(f"{key}.verdict"), "claim verdict": tags.get("verdict"),
                "wall min": round(metrics.get("wall_s", float("nan")) / 60, 1), "run": run.info.run_id,
            })
    return pd.DataFrame(rows)


def _interval(metrics: dict[str, float], prefix: str) -> str:
    """'[low, high]' of a recorded interval, or 'one seed' when the seed level was not estimable."""
    low, high = metrics.get(f"{prefix}_ci_low"), metrics.get(f"{prefix}_ci_high")
    return "one seed" if low is None else f"[{low:+.3f}, {high:+.3f}]"
