"""Leaderboards per setting: reproduced MLflow runs beside the papers' reported results."""
from leaderboards.runs import leaderboard, leaderboard_records

__all__ = ["leaderboard", "leaderboard_records"]
