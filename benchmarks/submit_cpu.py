"""Where the CPU time of one `harness submit` goes, process by process (the driver, the trial's
actor, and each of Ray's own processes).

Needs root: every run's Ray stays in a private network namespace with only loopback, as in the
tests. Each run is `harness submit --model nafnet --setting derain --profile smoke` (20 steps,
the budget of most tests) in a fresh state folder; while it runs, every process descended from it
is read from /proc every 0.2 s and keeps the largest user + system time seen (a process that ends
between two readings loses at most that much). `coverage` is the share of the machine's busy time
(/proc/stat) over the run that the processes account for. Medians over `--runs`.

    sudo .venv/bin/python benchmarks/submit_cpu.py [--runs 3]

Writes benchmarks/results/submit_cpu.json. On a 2-core machine the CPU seconds, not the wall
time, are the figure to compare: every process competes for the same two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from ray_sweep_overhead import cpu_times  # noqa: E402  (/proc/stat's counters, read in one place)

HARNESS = str(Path(sys.executable).with_name("harness"))
SUBMIT = ["submit", "--model", "nafnet", "--setting", "derain", "--profile", "smoke"]
TICK = os.sysconf("SC_CLK_TCK")

# A process's role from its command line (Ray's workers and agents rename theirs: ray::IDLE until
# an actor takes the worker, then ray::<the actor's class>) or the script it runs; checked in order.
AGENT_TITLES = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
ROLES = [
    ("trial actor", lambda comm, args: args.startswith("ray::") and not args.startswith(AGENT_TITLES)),
    ("idle prestarted workers", lambda comm, args: args.startswith("ray::IDLE") or "default_worker.py" in args),
    ("dashboard agent", lambda comm, args: args.startswith("ray::DashboardAgent") or "dashboard/agent.py" in args),
    ("runtime env agent", lambda comm, args: args.startswith("ray::RuntimeEnvAgent") or "runtime_env/agent" in args),
    ("dashboard", lambda comm, args: "dashboard.py" in args),
    ("log monitor", lambda comm, args: "log_monitor.py" in args),
    ("autoscaler monitor", lambda comm, args: "monitor.py" in args),
    ("gcs server", lambda comm, args: comm == "gcs_server"),
    ("raylet", lambda comm, args: comm == "raylet"),
    ("driver (harness submit)", lambda comm, args: "harness" in args and "submit" in args),
]


def busy_seconds() -> float:
    """The machine's busy CPU time so far (user, nice, system, irq, softirq) in seconds."""
    user, nice, system, _idle, _iowait, irq, softirq, _steal = cpu_times()
    return (user + nice + system + irq + softirq) / TICK


def process_table() -> dict[int, tuple[int, str, str, float]]:
    """pid -> (parent pid, name, command line, CPU seconds) of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            args = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended while being read
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), comm, args, (int(fields[11]) + int(fields[12])) / TICK)
    return table


def role(comm: str, args: str) -> str:
    """The role of a process in a submission (`other` for helpers such as the namespace's shell)."""
    return next((name for name, matches in ROLES if matches(comm, args)), "other")


def measure_once(home: Path) -> dict:
    """Run one submission in `home`; its wall time, the CPU seconds per role, and the coverage."""
    env = {**os.environ, "RESTORATION_BENCH_HOME": str(home)}
    command = shlex.join([HARNESS, *SUBMIT])
    started, busy_before = time.monotonic(), busy_seconds()
    log = home / "submit.log"  # a file, not a pipe: nobody reads a pipe while the run prints
    with log.open("w") as out:
        proc = subprocess.Popen(["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {command}"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    seen: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        table = process_table()
        family, grown = {proc.pid}, True
        while grown:  # every descendant of the submission, whatever the order of the pids
            grown = False
            for pid, (parent, *_) in table.items():
                if parent in family and pid not in family:
                    family.add(pid)
                    grown = True
        for pid in family & table.keys():
            _, comm, args, cpu = table[pid]
            name = role(comm, args)
            if cpu >= seen.get(pid, ("", 0.0))[1]:
                seen[pid] = (name if name != "other" else seen.get(pid, (name, 0))[0], cpu)
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"harness submit failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    wall, busy = time.monotonic() - started, busy_seconds() - busy_before
    per_role: dict[str, float] = {}
    for name, cpu in seen.values():
        per_role[name] = per_role.get(name, 0.0) + cpu
    total = sum(per_role.values())
    return {"wall_s": round(wall, 2), "cpu_s": {k: round(v, 2) for k, v in sorted(per_role.items(), key=lambda x: -x[1])},
            "total_cpu_s": round(total, 2), "coverage": round(total / busy, 3) if busy else None}


def main() -> None:
    """Measure `--runs` submissions and write the medians (and every run) to the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "submit_cpu.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: each run's Ray is kept in a private loopback-only network namespace")
    runs = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="submit-cpu-") as home:
            runs.append(measure_once(Path(home)))
        print(f"run {index + 1}/{args.runs}: {runs[-1]['wall_s']} s wall, {runs[-1]['total_cpu_s']} CPU s", flush=True)
    roles = sorted({name for run in runs for name in run["cpu_s"]},
                   key=lambda name: -statistics.median(run["cpu_s"].get(name, 0.0) for run in runs))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "submission": "harness " + " ".join(SUBMIT),
        "runs": args.runs,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "wall_s": statistics.median(run["wall_s"] for run in runs),
        "total_cpu_s": statistics.median(run["total_cpu_s"] for run in runs),
        "cpu_s": {name: round(statistics.median(run["cpu_s"].get(name, 0.0) for run in runs), 2) for name in roles},
        "coverage": statistics.median(run["coverage"] for run in runs),
        "every_run": runs,
    }
    for name, seconds in result["cpu_s"].items():
        print(f"{seconds:7.2f} CPU s  {name}")
    print(f"{result['total_cpu_s']:7.2f} CPU s  in all ({result['coverage']:.0%} of the machine's busy time), "
          f"{result['wall_s']} s wall")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
