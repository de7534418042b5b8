"""PSNR+SSIM throughput on 256x256 RGB images: the harness against scikit-image and pyiqa, in one run.

    python benchmarks/metrics_throughput.py --images 48 --rounds 5

Images are 256x256 crops of scikit-image's photographs with Gaussian noise, rounded to 8 bits.
Each round times every method on the same images, interleaved, so a busy machine slows all of
them alike; the figures are medians over rounds of wall-clock milliseconds per image (and of
process CPU time). Methods:

* scikit-image: `peak_signal_noise_ratio` + `structural_similarity` (defaults, the PromptIR
  protocol), float64, one image at a time (it has no batch API);
* pyiqa: its `psnr` + `ssimc` (RGB, Gaussian 11x11 window: pyiqa has no uniform-window SSIM),
  on the whole batch;
* harness: `harness.scoring.metrics.score` under the `promptir` protocol (float32 and float64 inputs),
  on the whole batch: on CPU the fused numba kernel of `harness.scoring.ssim_kernel` (compiled before
  timing starts), on a GPU batched torch operations.

The harness' numbers are checked against scikit-image's before any timing counts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def make_pairs(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` (restored, target) 8-bit-valued float64 pairs, N x size x size x 3 in [0, 1]."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")]
    targets, restored = [], []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        clean = photo[top : top + size, left : left + size].astype(np.float64)
        noisy = np.clip(np.round(clean + rng.normal(0, rng.uniform(3, 30), clean.shape)), 0, 255)
        targets.append(clean / 255.0)
        restored.append(noisy / 255.0)
    return np.stack(restored), np.stack(targets)


def _clock(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    """Time the methods, check agreement, print the ratios and write them to JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--device", default="cpu", help="device of the torch methods (cpu or cuda)")
    parser.add_argument("--skip-pyiqa", action="store_true")
    parser.add_argument("--output", default="benchmarks/results/metrics_throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from harness.scoring.metrics import score
    from harness.settings.protocols import get_protocol

    restored, targets = make_pairs(args.images, args.size)
    device = torch.device(args.device)
    as_batch = lambda a, dtype: torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).to(device, dtype)  # noqa: E731
    x32, y32 = as_batch(restored, torch.float32), as_batch(targets, torch.float32)
    x64, y64 = as_batch(restored, torch.float64), as_batch(targets, torch.float64)
    protocol = get_protocol("promptir")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def skimage_all():
        return [(peak_signal_noise_ratio(t, r, data_range=1.0), structural_similarity(t, r, data_range=1.0, channel_axis=2))
                for r, t in zip(restored, targets)]

    def harness(x, y):
        def run():
            out = score(x, y, protocol)
            sync()
            return out
        return run

    methods = {"scikit-image": skimage_all, "harness float32": harness(x32, y32), "harness float64": harness(x64, y64)}
    if not args.skip_pyiqa:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import pyiqa

        pyiqa_psnr = pyiqa.create_metric("psnr", device=device)
        pyiqa_ssim = pyiqa.create_metric("ssimc", device=device)

        def pyiqa_all():
            with torch.no_grad():
                out = pyiqa_psnr(x32, y32), pyiqa_ssim(x32, y32)
            sync()
            return out

        methods["pyiqa (psnr + ssimc)"] = pyiqa_all

    # agreement first: the speed of a wrong answer does not count
    reference = np.array(skimage_all())
    agreement = {}
    for name in ("harness float32", "harness float64"):
        out = methods[name]()
        agreement[name] = {"psnr_max_abs_db": float(np.abs(out["psnr"].cpu().numpy() - reference[:, 0]).max()),
                           "ssim_max_abs": float(np.abs(out["ssim"].cpu().numpy() - reference[:, 1]).max())}
    for fn in methods.values():  # warm-up (thread pools, buffers, pyiqa kernels)
        fn()

    wall: dict[str, list[float]] = {n: [] for n in methods}
    cpu: dict[str, list[float]] = {n: [] for n in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            w, c, _ = _clock(fn)
            wall[name].append(1000 * w / args.images)
            cpu[name].append(1000 * c / args.images)
    rows = {n: {"wall_ms_per_image": statistics.median(wall[n]), "cpu_ms_per_image": statistics.median(cpu[n])}
            for n in methods}
    base = rows["scikit-image"]
    for name, row in rows.items():
        row["speedup_vs_scikit_image_wall"] = base["wall_ms_per_image"] / row["wall_ms_per_image"]
        if "pyiqa (psnr + ssimc)" in rows:
            row["speedup_vs_pyiqa_wall"] = rows["pyiqa (psnr + ssimc)"]["wall_ms_per_image"] / row["wall_ms_per_image"]

    print(f"{args.images} images {args.size}x{args.size} RGB, {args.rounds} rounds, torch threads "
          f"{torch.get_num_threads()}, device {device}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':24s} {'wall ms/img':>12s} {'cpu ms/img':>11s} {'x skimage':>10s} {'x pyiqa':>8s}")
    for name, row in rows.items():
        vs_pyiqa = f"{row['speedup_vs_pyiqa_wall']:8.1f}" if "speedup_vs_pyiqa_wall" in row else ""
        print(f"{name:24s} {row['wall_ms_per_image']:12.2f} {row['cpu_ms_per_image']:11.2f} "
              f"{row['speedup_vs_scikit_image_wall']:10.1f} {vs_pyiqa}")
    for name, a in agreement.items():
        print(f"{name} vs scikit-image: PSNR max |diff| {a['psnr_max_abs_db']:.2e} dB, SSIM max |diff| {a['ssim_max_abs']:.2e}")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        "device": str(device), "images": args.images, "size": args.size, "rounds": args.rounds,
        "load_average": os.getloadavg(), "rows": rows, "agreement": agreement}, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
