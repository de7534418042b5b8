"""`harness rescore`: score saved outputs again under another protocol view, in the same MLflow run."""
from __future__ import annotations

import argparse

from harness.cli.common import setting_names
from harness.cli.registry import command, complete


def protocol_names(**_: object) -> list[str]:
    """Registered protocol names (shell completion)."""
    from harness.settings import PROTOCOLS

    return PROTOCOLS.names()


def _arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN_ID", help="one MLflow run")
    complete(which.add_argument("--setting", help="every finished run of this setting"), setting_names)
    which.add_argument("--stale", action="store_true",
                       help="every run holding a view scored under an older protocol version")
    complete(p.add_argument("--protocol", help="the view's protocol (`harness list protocols`); "
                                                "--stale: only this protocol's views"), protocol_names)
    p.add_argument("--tracking-uri")


def _targets(mlflow, args: argparse.Namespace) -> list[tuple[object, object]]:
    """(run, protocol) pairs to re-score; validates every name first."""
    from harness.runs.rescore import get_run, setting_runs, stale_views
    from harness.settings import SETTINGS, get_protocol, get_setting

    protocol = get_protocol(args.protocol) if args.protocol else None
    if args.stale:
        runs = [r for s in SETTINGS.names() for r in setting_runs(mlflow, s)]
        return [(r, p) for r in runs for p in stale_views(r) if protocol is None or p.name == protocol.name]
    if protocol is None:
        raise ValueError("--protocol is required with --run and --setting (`harness list protocols`)")
    if args.run:
        return [(get_run(mlflow, args.run), protocol)]
    from harness.scoring.views import check_fits

    check_fits(get_setting(args.setting), protocol)
    return [(r, protocol) for r in setting_runs(mlflow, args.setting)]


@command("rescore", "score saved outputs again under another protocol, in the same MLflow runs", _arguments)
def run(args: argparse.Namespace) -> int:
    """Re-score the chosen runs; skip (and name) those without saved outputs."""
    import sys

    from harness.runs import tracking
    from harness.runs.rescore import NoSavedOutputs, rescore
    from harness.runs.store import missing_local_store, tracking_uri
    from harness.scoring.views import check_fits
    from harness.settings import get_protocol, get_setting

    if args.protocol:
        get_protocol(args.protocol)  # an unknown name lists the valid ones before any store is opened
    if args.setting:
        get_setting(args.setting)
    uri = tracking_uri(args.tracking_uri)
    if (database := missing_local_store(uri)) is not None:
        raise ValueError(f"no runs to re-score: the store {database} does not exist yet (train with "
                         "`harness submit`, or give the --tracking-uri of your runs)")
    mlflow = tracking.client(uri)
    targets = _targets(mlflow, args)
    for run_, protocol in targets:  # a colour space that cannot fit is refused before anything is logged
        check_fits(get_setting(run_.data.tags["setting"]), protocol)
    if not targets:
        print("nothing to re-score")
        return 0
    skipped = 0
    for run_, protocol in targets:
        name = f"{run_.info.run_id} ({run_.info.run_name})"
        try:
            done = rescore(mlflow, run_, protocol)
        except NoSavedOutputs as err:
            if args.run:
                raise
            print(f"skipped {name}: {err}", file=sys.stderr)
            skipped += 1
            continue
        view = done.prefix or "(the setting's own view)"
        avg = done.metrics[f"{done.prefix}psnr/avg"]
        if done.action == "checked":
            same = "equal the logged ones" if done.matches else "DIFFER from the logged ones"
            print(f"{name}: {protocol.name} v{protocol.version} already scored; re-scored values {same} "
                  f"(PSNR avg {avg:.4f} dB)")
        else:
            print(f"{name}: {protocol.name} v{protocol.version} {done.action} as {view} (PSNR avg {avg:.4f} dB)")
    if skipped:
        print(f"{skipped} run(s) without saved outputs skipped", file=sys.stderr)
    return 0
