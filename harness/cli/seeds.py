"""`harness submit --seeds/--repeats`: reading the seeds, and printing a seeded entry once it has trained."""
from __future__ import annotations


def parse_seeds(seeds: str | None, repeats: int | None) -> list[int] | None:
    """`--seeds 0,1,2` or `--repeats N` (seeds 0..N-1) as a list of distinct non-negative seeds; None if neither."""
    if seeds is not None and repeats is not None:
        raise ValueError("give --seeds or --repeats, not both")
    if repeats is not None:
        if repeats < 1:
            raise ValueError(f"--repeats must be a positive number of seeds, got {repeats}")
        return list(range(repeats))
    if seeds is None:
        return None
    try:
        values = [int(part) for part in seeds.split(",")]
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated non-negative integers like 0,1,2, got '{seeds}'") from None
    negative = [v for v in values if v < 0]
    if negative:
        raise ValueError(f"--seeds must be non-negative integers, got {negative[0]} in '{seeds}'")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"--seeds must be distinct; {repeated[0]} is given more than once in '{seeds}'")
    return values


def print_seeds(run_config, seeds: list[int], cluster, explicit_uri: str | None) -> int:
    """Train `run_config` once per seed (harness/runs/seeds.py), print each seed's scores and the leaderboard."""
    from harness.cli.common import print_board
    from harness.runs.seeds import submit_seeds

    result = submit_seeds(run_config, seeds, cluster, explicit_uri)
    print(f"\nFinished: MLflow parent run {result.parent} with {len(seeds)} seeds in {result.tracking_uri}")
    for seed, metrics in sorted(result.metrics.items()):
        print(f"  seed {seed} (run {result.run_ids[seed]}): psnr/avg {metrics.get('psnr/avg', float('nan')):.4f}  "
              f"ssim/avg {metrics.get('ssim/avg', float('nan')):.4f}")
    print()
    print_board(run_config.setting, result.tracking_uri, "table")
    return 0
