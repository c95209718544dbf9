"""End-to-end speed of ``streamsr run`` at fp32 and bf16 on the CPU: whole processes on the same
synthetic clip, settings interleaved round by round (a shared machine slows them alike), the
in-loop fps from each run's stats and the whole process's wall time.

    python tools/bench_precision.py                     # ESPCN, SRResNet, UDVD x2
    python tools/bench_precision.py --models espcn --rounds 5 --output BENCHMARKS.md

Settings per model: fp32 on the backend auto picks for it, bf16 on PyTorch, bf16 with --compile
(ESPCN only: compiling fails for UDVD and is slower for SRResNet, BENCHMARKS.md). Ratios are per
round against fp32 (min / median).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (model, input WxH, frames): light networks at 640x360, heavy ones at 320x180 to keep rounds short
CASES = {"espcn": ((640, 360), 60), "srresnet": ((320, 180), 30), "udvd": ((320, 180), 30)}
SETTINGS = {
    "fp32 (auto backend)": ["--precision", "fp32"],
    "bf16 (torch)": ["--precision", "bf16"],
    "bf16 (torch, --compile)": ["--precision", "bf16", "--compile"],
}


def run_once(clip: Path, out: Path, model: str, extra: list[str]) -> tuple[float, float, str]:
    """(in-loop fps, wall seconds, "backend precision") of one whole ``streamsr run``."""
    stats = out.with_suffix(".json")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streamsr.cli", "run", str(clip), "-o", str(out), "--model", model, "--scale", "2",
                    "--device", "cpu", "--stats-json", str(stats), "-q", *extra], check=True)
    wall = time.perf_counter() - start
    s = json.loads(stats.read_text())
    return s["fps"], wall, f"{s['backend']} {s['precision']}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=None, help="clip length instead of each model's own")
    ap.add_argument("--output", type=Path, default=None, help="append the table to this Markdown file")
    args = ap.parse_args(argv)

    from streamsr.bench import synth_clip
    from streamsr.machine import CPU_BF16_FLAGS, cpu_flags

    flags = ", ".join(sorted(cpu_flags() & CPU_BF16_FLAGS)) or "no bf16 instructions"
    lines = [f"### fp32 against bf16, whole `streamsr run` processes, CPU ({flags})", "",
             ("| model | input, frames | setting | ran on | in-loop fps (best) | x fp32 in loop (min / median) | "
              "wall s (best) | x fp32 whole process (min / median) |"), "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            (w, h), frames = CASES[model]
            frames = args.frames or frames
            clip = synth_clip(Path(tmp) / f"{model}.mp4", w, h, frames)
            settings = {k: v for k, v in SETTINGS.items() if "--compile" not in v or model == "espcn"}
            got: dict[str, list[tuple[float, float, str]]] = {k: [] for k in settings}
            for r in range(args.rounds):
                names = list(settings)
                for name in names[r % len(names):] + names[:r % len(names)]:
                    out = Path(tmp) / f"{model}-{r}-{names.index(name)}.mp4"
                    got[name].append(run_once(clip, out, model, settings[name]))
                    out.unlink()
                    print(f"{model} round {r + 1} {name}: {got[name][-1]}", flush=True)
            base = got["fp32 (auto backend)"]
            for name, runs in got.items():
                loop = [a[0] / b[0] for a, b in zip(runs, base, strict=True)]
                whole = [b[1] / a[1] for a, b in zip(runs, base, strict=True)]
                lines.append(f"| {model} x2 | {w}x{h}, {frames} | {name} | {runs[0][2]} | {max(r[0] for r in runs):.2f} | "
                             f"{min(loop):.2f} / {statistics.median(loop):.2f} | {min(r[1] for r in runs):.2f} | "
                             f"{min(whole):.2f} / {statistics.median(whole):.2f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        with args.output.open("a") as f:
            f.write("\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
