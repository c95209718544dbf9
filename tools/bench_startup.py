"""Start-up of ``streamsr run`` on ONNX Runtime: this checkout against an earlier revision, whole
processes interleaved round by round (a shared machine slows both alike).

    python tools/bench_startup.py --against a6cefca
    python tools/bench_startup.py --against a6cefca --rounds 7 --output BENCHMARKS.md

Each round runs, for each checkout, one frame (``--max-frames 1``: the wall time bounds the time to
the first frame written) and a 30-frame run of a 640x360 clip, ESPCN x2 on ONNX Runtime, and reads
the process's peak RSS from ``wait4``. One warm-up run per checkout first fills its caches (the
exported graph and the memory plan, keyed by the code): "after the first run", as users see it.
Reports min / median per checkout and the ratio this / earlier per round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (label, frames): the one-frame run bounds the time to the first frame; 30 frames show the queues
RUNS = (("1 frame", 1), ("30 frames", 30))


def run_once(tree: Path, clip: Path, out: Path, frames: int) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one ``streamsr run`` from the source tree ``tree``."""
    cmd = [sys.executable, "-m", "streamsr.cli", "run", str(clip), "-o", str(out), "--model", "espcn", "--scale", "2",
           "--backend", "onnxruntime", "--device", "cpu", "--max-frames", str(frames), "-q"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=tree)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {tree} (exit {proc.returncode})")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, help="the earlier git revision to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--output", type=Path, default=None, help="append the table to this Markdown file")
    args = ap.parse_args()

    from streamsr.synth import write_clip

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        earlier = tmp / "earlier"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(earlier), args.against],
                       check=True)
        try:
            clip = write_clip(tmp / "clip.mp4", frames=30, size=(640, 360))
            trees = {"this": ROOT, args.against: earlier}
            results = {(t, label): [] for t in trees for label, _ in RUNS}
            for name, tree in trees.items():  # the first run of each: fills its caches
                run_once(tree, clip, tmp / "warm.mp4", 1)
            for r in range(args.rounds):
                for label, frames in RUNS:
                    for name, tree in (trees.items() if r % 2 == 0 else reversed(trees.items())):
                        results[name, label].append(run_once(tree, clip, tmp / "out.mp4", frames))
            head = (f"| run | {args.against}: wall, min / median (s) | this | ratio this/{args.against} "
                    f"(min / median) | peak RSS {args.against} → this (MiB, median) |")
            lines = [head, "|---|---|---|---|---|"]
            for label, _ in RUNS:
                old, new = results[args.against, label], results["this", label]
                ratios = [n[0] / o[0] for n, o in zip(new, old, strict=True)]
                lines.append(
                    f"| {label} | {min(w for w, _ in old):.2f} / {statistics.median(w for w, _ in old):.2f} "
                    f"| {min(w for w, _ in new):.2f} / {statistics.median(w for w, _ in new):.2f} "
                    f"| {min(ratios):.2f} / {statistics.median(ratios):.2f} "
                    f"| {statistics.median(m for _, m in old):.0f} → {statistics.median(m for _, m in new):.0f} |")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(earlier)], check=False)
    table = "\n".join(lines)
    print(table)
    if args.output:
        stamp = time.strftime("%Y-%m-%d")
        with open(args.output, "a") as f:
            f.write(f"\n{stamp}, {args.rounds} rounds, ESPCN x2 640x360 on ONNX Runtime:\n\n{table}\n")


if __name__ == "__main__":
    main()
