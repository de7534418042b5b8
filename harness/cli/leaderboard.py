"""`harness leaderboard`: rank the finished runs of a setting, beside the papers' reported numbers."""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Callable

from harness.cli.common import print_board, profile_names, setting_names
from harness.cli.registry import command, complete

CODE = ("harness", "leaderboards", "zoo")  # packages whose code shapes a board: an edit recomputes it


def _arguments(p: argparse.ArgumentParser) -> None:
    complete(p.add_argument("--setting", required=True), setting_names)
    p.add_argument("--source", choices=["reproduced", "reported", "all"], default="reproduced",
                   help="reproduced runs (default), the papers' reported rows, or both side by side")
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.add_argument("--pick", choices=["best", "latest"], default="best", help="which run stands for a model")
    complete(p.add_argument("--profile", help="only runs of this profile"), profile_names)
    p.add_argument("--view", choices=["rgb", "y", "matlab"],
                   help="the protocol view ranked on (default: the setting's own; matlab after `harness rescore`)")
    p.add_argument("--show-seeds", action="store_true",
                   help="also list each seed's row of the entries trained with `submit --seeds` (CSV: those rows only)")
    p.add_argument("--tracking-uri")


@command("leaderboard", "rank the finished runs of a setting, beside the papers' numbers", _arguments)
def run(args: argparse.Namespace) -> int:
    """Print the leaderboard of a setting from finished MLflow runs (from the cache while a local store is unchanged)."""
    from harness.runs.store import missing_local_store, tracking_uri

    uri = tracking_uri(args.tracking_uri)
    options = (args.setting, args.format, args.pick, args.profile, args.source, args.view, args.show_seeds)
    print(cached_board(uri, options, lambda: _board_text(uri, options)), end="")
    if (database := missing_local_store(uri)) is not None:
        print(f"note: no tracking store at {database} yet (`harness submit` creates it); nothing was created",
              file=sys.stderr)
    return 0


def _board_text(uri: str, options: tuple) -> str:
    """What print_board prints for these options, as one string."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_board(options[0], uri, *options[1:])
    return out.getvalue()


def cached_board(uri: str, options: tuple, compute: Callable[[], str]) -> str:
    """The board's text for `options`, reused while the local store, the code and the reported tables are unchanged.

    Importing MLflow's SQLAlchemy store and pandas costs about 2 s of the 3 s a board takes
    (issue 26, benchmarks/cli_latency.py); an unchanged store gives an unchanged board, so a
    repeated call answers from the cache. Servers' stores are always read (no cheap fingerprint).
    """
    from harness.cache import cached, package_digest
    from harness.runs.store import local_store_state

    state = local_store_state(uri)
    if state is None:
        return compute()
    reported = Path(__file__).resolve().parents[2] / "leaderboards" / "reported"
    tables = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in reported.glob("*")) if reported.is_dir() else []
    key = hashlib.sha256(json.dumps([state, tables, *(package_digest(p) for p in CODE)]).encode()).hexdigest()
    name = hashlib.sha256(json.dumps([uri, options]).encode()).hexdigest()[:20]  # one entry per store and options
    return cached(f"leaderboard-{name}", key, compute)
