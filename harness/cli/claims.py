"""`harness claims list|run`: each seed paper's headline relative claim as one command (harness/claims/)."""
from __future__ import annotations

import argparse

from harness.cli.registry import command


def _claim_names(**_) -> list[str]:
    """Shell completion: the registered claims."""
    from harness.claims import CLAIMS

    return CLAIMS.names()


def _arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="each claim with its citation and the paper's figures")
    run = sub.add_parser("run", help="train what a claim needs, print the paper's figures beside ours, and a verdict")
    run.add_argument("name", help="a claim from `harness claims list`").completer = _claim_names  # type: ignore[attr-defined]
    run.add_argument("--budget", default="tiny", help="smoke | tiny | small (default: tiny): steps of each training")
    run.add_argument("--seeds", default="3", help="number of seeds (0..N-1; default 3)")
    run.add_argument("--address", help="address of a running Ray cluster (default: start a local one)")
    run.add_argument("--cpus", type=int, help="CPUs of a local cluster (default: all)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or a local SQLite store)")
    run.add_argument("--plan-only", action="store_true", help="print the plan and stop")


def _seed_count(text: str) -> int:
    """`--seeds N` as a positive number of seeds."""
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"--seeds expects a positive number of seeds, got '{text}'") from None
    if count < 1:
        raise ValueError(f"--seeds expects a positive number of seeds, got {count}")
    return count


@command("claims", "list the seed papers' headline claims, or re-check one (`claims run NAME`)", _arguments)
def run(args: argparse.Namespace) -> int:
    """List the registered claims, or run one: plan, train, compare, verdict."""
    from harness.claims import BUDGETS, CLAIMS

    if args.action == "list":
        for name in CLAIMS.names():
            claim = CLAIMS.get(name)
            print(f"{name}: {claim.statement}\n  {claim.citation}")
            for c in claim.comparisons:
                print(f"  - {c.label}: paper {c.paper:+.3f} dB ({c.source})")
            for f in claim.figures:
                print(f"  - {f.label}: paper {f.paper:g}{f.unit} ({f.source})")
            for m in claim.macs:
                print(f"  - {m.label}: paper {m.paper}")
        return 0
    claim, budget, seeds = CLAIMS.get(args.name), BUDGETS.get(args.budget), _seed_count(args.seeds)
    if args.cpus is not None and args.cpus < 1:
        raise ValueError(f"--cpus must be a positive number of CPUs, got {args.cpus}")
    from harness.claims.runner import make_plan, run_claim
    from harness.runs.submit import ClusterOptions

    plan = make_plan(claim, budget, list(range(seeds)), args.cpus)
    print(plan.text(), flush=True)
    if args.plan_only:
        return 0
    result = run_claim(claim, budget, list(range(seeds)), ClusterOptions(address=args.address, cpus=args.cpus),
                       args.tracking_uri, plan)
    print()
    print(result.text())
    return 0
