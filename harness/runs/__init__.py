"""Runs: a run's configuration and budget, training, the Ray trial, submit/sweep/dedicated grids, MLflow.

May import harness.settings, harness.data, harness.scoring, the zoo, Ray and MLflow; never the CLI.
`store.py` (where runs are kept) imports nothing heavy, so the leaderboards can use it.
"""
