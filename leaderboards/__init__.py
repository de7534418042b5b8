"""Leaderboards per setting, built from finished MLflow runs."""
from leaderboards.runs import leaderboard, leaderboard_records

__all__ = ["leaderboard", "leaderboard_records"]
