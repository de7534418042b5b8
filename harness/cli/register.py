"""`harness register`: register a finished run's model in the MLflow Model Registry."""
from __future__ import annotations

import argparse

from harness.cli.registry import command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="MLflow run id of a FINISHED run")
    p.add_argument("--name", required=True, help="registered model name (created if new)")
    p.add_argument("--alias", help="an alias for the new version, e.g. champion (models:/NAME@ALIAS)")
    p.add_argument("--tracking-uri")


@command("register", "register a finished run's model in the MLflow Model Registry", _arguments)
def run(args: argparse.Namespace) -> int:
    """Create a model version from the run's logged model and print its URIs."""
    from harness.runs.register import register_run
    from harness.runs.store import tracking_uri

    done = register_run(args.run, args.name, tracking_uri(args.tracking_uri), args.alias)
    print(f"registered run {args.run} as models:/{done.name}/{done.version} (logged model {done.model_id})")
    if done.alias:
        print(f"  alias: models:/{done.name}@{done.alias}")
    return 0
