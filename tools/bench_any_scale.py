"""LIIF and LTE against ESPCN on the CPU, side by side in one run: model-only and end-to-end fps at
three input -> output sizes, what reusing the query tables saves, and the peak memory of one frame
at 1080p and 4K output on the torch and onnxruntime backends. Measurements are repeated in
interleaved rounds (every case once per round) and reported as median and best, with ratios to
ESPCN, since a shared machine is noisy.

    python tools/bench_any_scale.py                         # full: an hour or more on a small CPU
    python tools/bench_any_scale.py --smoke                 # about a minute: sizes / 8, one round
    python tools/bench_any_scale.py --output BENCHMARKS.md  # append to the project's record

--cases, --rounds, --frames, --runs, --seconds, --memory-cases and --no-memory limit a run.

ESPCN is asked for the output size (``size=``), as ``streamsr run --size`` does: 640x360 ->
1280x720 is its x2 and 640x360 -> 1920x1080 its x3 exactly; 480x270 -> 1280x720 (x2.667) has no
network of its own, so ESPCN runs its next factor, x3 (480x270 -> 1440x810), and the sink resizes
to 1280x720 (Lanczos). LIIF/LTE without shipped weights run randomly initialised (same speed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = [((640, 360), (1280, 720)), ((480, 270), (1280, 720)), ((640, 360), (1920, 1080))]
MEMORY_CASES = [((960, 540), (1920, 1080)), ((960, 540), (3840, 2160))]
MODELS = ("liif", "lte", "espcn")
ANY_SCALE = ("liif", "lte")


def _shrunk(size: tuple[int, int], by: int) -> tuple[int, int]:
    return tuple(max(2, 2 * round(v / by / 2)) for v in size)


def _config(model: str, out: tuple[int, int], backend: str, weights: dict, threads: int | None):
    from streamsr import RunConfig

    return RunConfig(model=model, size=out, device="cpu", backend=backend, audio=False, weights=weights.get(model),
                     backend_options={backend: {"threads": threads}} if threads else {})


class _Notes(logging.Handler):
    """The run plan's notices (tiling, shortened queues) are logged as warnings: keep them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("streamsr.ffmpeg"):
            self.lines.append(record.getMessage())


def _stat(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({max(values):.{digits}f})"


def _peak_rss() -> int:
    """The process's peak resident memory so far, bytes: VmHWM, the counter getrusage's ru_maxrss
    reads for the process's own memory. ru_maxrss itself is not used on Linux: a child started
    by fork + exec inherits the parent's peak in it (kept across exec), which would hide a
    smaller child's own peak."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> bool:
    """Reset the peak (VmHWM, which ru_maxrss reports) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_case(case: dict) -> dict:
    """One frame, in this (fresh) process: the network alone, then end to end, each with the peak
    RSS reset before it. Runs the frame as the run plan decides (tiled when its estimate exceeds
    the memory budget)."""
    from streamsr.backends import load_backend
    from streamsr.backends.tiling import TiledBackend
    from streamsr.bench import run_geometry, synth_clip, with_weights
    from streamsr.io.source import Source
    from streamsr.machine import Machine
    from streamsr.models.inputs import InputAssembler, run_conditioning
    from streamsr.pipeline.job import upscale_video
    from streamsr.pipeline.plan import plan_run, plan_source

    (w, h), out = case["input"], tuple(case["output"])
    result = {"imports": _peak_rss()}
    with TemporaryDirectory() as tmp:
        clip = synth_clip(Path(tmp) / "in.mp4", w, h, 1)
        asked = _config(case["model"], out, case["backend"], case["weights"], case["threads"])
        config, geometry, variant = run_geometry(asked, w, h)
        config, result["untrained"] = with_weights(config, variant, tmp)
        backend = load_backend(config, variant)
        result["loaded"] = _peak_rss()
        machine = Machine.probe()
        with Source(clip) as source:
            info = source.info
        plan = plan_run(config, info, Path(tmp) / "out.mp4", plan_source(config, clip, machine), backend, machine)
        result.update(tile=plan.tile, estimate=plan.memory.total if plan.memory else None, notices=list(plan.notices),
                      budget=machine.memory // 2 if machine.memory else None, net=list(geometry.net_size))
        net = TiledBackend(backend, plan.tile, plan.tile_overlap) if plan.tile else backend
        x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
        extra = InputAssembler(variant.inputs).arrays([run_conditioning(1.0, 5.0)], h, w, (out[1], out[0]))
        result["reset"] = _reset_peak()
        with open("/proc/self/statm") as f:
            result["before"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        net.infer(x, extra)
        result["network"] = _peak_rss()
        _reset_peak()
        upscale_video(clip, Path(tmp) / "out.mp4", config, backend=backend)
        result["end_to_end"] = _peak_rss()
        backend.close()
    return result


def run_memory(args, weights: dict, report) -> str:
    """Every memory case in a fresh subprocess; a Markdown table."""
    lines, notices, mib = [], {}, lambda b: f"{b / 2**20:,.0f}"
    for k, ((w, h), out) in enumerate(MEMORY_CASES):
        if args.memory_cases is not None and k not in args.memory_cases:
            continue
        (w, h), out = _shrunk((w, h), args.shrink), _shrunk(out, args.shrink)
        for backend in args.memory_backends.split(","):
            for model in MODELS:
                case = {"model": model, "backend": backend, "input": [w, h], "output": list(out), "weights": weights,
                        "threads": args.threads}
                p = subprocess.run([sys.executable, __file__, "--memory-case", json.dumps(case)], capture_output=True,
                                   text=True, timeout=args.memory_timeout, check=False)
                sizes = f"{w}x{h} -> {out[0]}x{out[1]}"
                if p.returncode:
                    why = (p.stderr.strip().splitlines() or ["?"])[-1]
                    lines.append(f"| {model} | {backend} | {sizes} | failed: {why} | | | | |")
                    report(f"memory {model} {backend} {sizes}: failed ({why})")
                    continue
                r = json.loads(p.stdout.strip().splitlines()[-1])
                tiled = f"tiled, {r['tile']}-px tiles" if r["tile"] else "whole frame"
                notices.update((f"{model} {backend}: {n}", None) for n in r["notices"])
                estimate = f"{r['estimate'] / 2**30:.1f} of {r['budget'] / 2**30:.1f}" if r["budget"] else "-"
                mark = "" if r["reset"] else " (since start)"
                lines.append(f"| {model}{' *' if r['untrained'] else ''} | {backend} | {sizes} | {tiled} | "
                             f"{mib(r['loaded'])} | {mib(r['network'])}{mark} (+{mib(r['network'] - r['before'])}) | "
                             f"{mib(r['end_to_end'])}{mark} | {estimate} |")
                report(f"memory {model} {backend} {sizes}: {tiled}, network peak {mib(r['network'])} MiB, "
                       f"end to end {mib(r['end_to_end'])} MiB")
    return ("\n#### Peak memory of one frame (RSS, MiB; a fresh process per row)\n\n"
            "Peak RSS (VmHWM, what getrusage's ru_maxrss reads) after loading, then the peak of one frame "
            "through the network alone (+ over the RSS just before it) and end to end (decode, colour, network, "
            "resize, x264), each peak reset before it (/proc/self/clear_refs). The frame runs as the run plan "
            "decides: tiled when its estimate exceeds the budget (half the memory available; "
            "streamsr/pipeline/memory.py, plan._fit_memory).\n\n"
            "| model | backend | input -> output | plan | after load | network, one frame | end to end, one frame "
            "| plan's estimate / budget, GiB |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
            + "".join(f"\nPlan notice, {n}\n" for n in notices))


def run_throughput(args, weights: dict, report) -> str:
    """Model-only and end-to-end fps, and the table experiment, in interleaved rounds."""
    from streamsr.backends import load_backend
    from streamsr.bench import model_only_fps, network_gflop, run_geometry, synth_clip, with_weights
    from streamsr.models.inputs import InputAssembler, run_conditioning
    from streamsr.pipeline.job import upscale_video

    cases = [(_shrunk(i, args.shrink), _shrunk(o, args.shrink)) for k, (i, o) in enumerate(CASES)
             if args.cases is None or k in args.cases]
    samples: dict = {}  # (case, model, what) -> list of values
    add = lambda key, v: samples.setdefault(key, []).append(v)
    notes, setups, untrained = _Notes(), {}, set()
    logging.getLogger("streamsr").addHandler(notes)
    with TemporaryDirectory() as tmp:
        for c, ((w, h), out) in enumerate(cases):
            clip = synth_clip(Path(tmp) / f"in{c}.mp4", w, h, args.frames)
            for model in MODELS:
                config, geometry, variant = run_geometry(_config(model, out, args.backend, weights, args.threads), w, h)
                config, random = with_weights(config, variant, tmp)
                untrained |= {model} if random else set()
                backend = load_backend(config, variant)
                upscale_video(clip, Path(tmp) / "warm.mp4", config, backend=backend, stop_after=1)
                setups[c, model] = (clip, config, geometry, variant, backend)
        for r in range(args.rounds):
            for c, ((w, h), out) in enumerate(cases):
                models = MODELS[r % 3:] + MODELS[: r % 3]  # a different order each round
                for model in models:
                    clip, config, geometry, variant, backend = setups[c, model]
                    for fresh in (False, True) if model in ANY_SCALE else (False,):
                        add((c, model, "fresh" if fresh else "model"),
                            model_only_fps(backend, w, h, 1, args.seconds, net_size=geometry.net_size,
                                           fresh_inputs=fresh, runs=args.runs))
                    stats = upscale_video(clip, Path(tmp) / "out.mp4", config, backend=backend)
                    add((c, model, "e2e"), stats.fps)
                    add((c, model, "bound"), min((s for s in stats.stages if s.fps), key=lambda s: s.fps).name)
                    report(f"round {r + 1}: {w}x{h} -> {out[0]}x{out[1]} {model}: model-only "
                           f"{samples[c, model, 'model'][-1]:.2f} fps, end to end {stats.fps:.2f} fps")
                variant = setups[c, "liif"][3]
                cond = [run_conditioning(1.0, 0.0)]
                for _ in range(args.table_repeats):  # the tables alone, as a new assembler builds them
                    t = time.perf_counter()
                    InputAssembler(variant.inputs).arrays(cond, h, w, (out[1], out[0]))
                    add((c, "tables", "ms"), (time.perf_counter() - t) * 1000)
        for clip, config, geometry, variant, backend in setups.values():
            backend.close()
    logging.getLogger("streamsr").removeHandler(notes)

    med = lambda key: statistics.median(samples[key])
    rows, table_rows = [], []
    for c, ((w, h), out) in enumerate(cases):
        sizes = f"{w}x{h} -> {out[0]}x{out[1]}"
        for model in MODELS:
            _, _, g, variant, _ = setups[c, model]
            runs = (f"x{g.factor} ({g.net_size[0]}x{g.net_size[1]}), resized" if g.resized
                    else f"{g.label} ({g.net_size[0]}x{g.net_size[1]})")
            ratio = {what: f"{med((c, model, what)) / med((c, 'espcn', what)):.3f}" for what in ("model", "e2e")}
            rows.append(f"| {sizes} | {model}{' *' if model in untrained else ''} | {runs} | "
                        f"{network_gflop(variant, g.in_size, g.net_size):.1f} | {_stat(samples[c, model, 'model'])} | "
                        f"{_stat(samples[c, model, 'e2e'])} | {ratio['model']} | {ratio['e2e']} | "
                        f"{statistics.mode(samples[c, model, 'bound'])} |")
        ms = samples[c, "tables", "ms"]
        frame_ms = 1000 / med((c, "liif", "model"))
        table_rows.append(f"| {sizes} | {statistics.median(ms):.2f} ({min(ms):.2f}) | "
                          + " | ".join(f"{_stat(samples[c, m, 'model'])} / {_stat(samples[c, m, 'fresh'])}"
                                       for m in ANY_SCALE)
                          + f" | {statistics.median(ms) / frame_ms:.1%} |")
    foot = ("\n\\* untrained (random) weights, none shipped yet: the speed is the trained network's.\n"
            if untrained else "")
    plan_notes = "".join(f"\nPlan notice: {n}" for n in dict.fromkeys(notes.lines))
    return ("\n#### Throughput: fps median (best) of the rounds; ratios of the medians to ESPCN's\n\n"
            "Best: the fastest round (its minimum time). "
            "Model-only: the network alone on host arrays/CPU tensors, query tables built once per size; end to "
            "end: decode, colour, network, (resize), x264 of a synthetic clip. ESPCN asked for a size none of its "
            "factors gives exactly runs its next factor and the sink resizes (\"resized\").\n\n"
            "| input -> output | model | network runs | GFLOP/frame | model-only fps | end-to-end fps "
            "| model-only vs ESPCN | end-to-end vs ESPCN | bound |\n|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n" + foot + plan_notes
            + "\n\n#### Query tables: cached (one per size) vs rebuilt for every frame\n\n"
            "Table build: a new InputAssembler building both tables (rows, cols) for one frame, ms median (best). "
            "Model-only fps with the tables reused / with a new assembler (tables rebuilt) every frame; the last "
            "column: a build's share of a LIIF frame.\n\n"
            "| input -> output | table build, ms | LIIF fps reused / rebuilt | LTE fps reused / rebuilt "
            "| build / LIIF frame |\n|---|---|---|---|---|\n" + "\n".join(table_rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=None,
                    help="Markdown file to append to (default: a new runs/bench_any_scale-<time>.md).")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved repetitions.")
    ap.add_argument("--frames", type=int, default=12, help="Clip length of the end-to-end runs.")
    ap.add_argument("--seconds", type=float, default=2.0, help="Least time of one model-only measurement.")
    ap.add_argument("--runs", type=int, default=3, help="Least calls of one model-only measurement.")
    ap.add_argument("--table-repeats", type=int, default=10, help="Table builds timed per case and round.")
    ap.add_argument("--cases", default=None, help="Throughput cases to run, by index (0,1,2; default all).")
    ap.add_argument("--shrink", type=int, default=1, help="Divide every size by this (quick checks of the tool).")
    ap.add_argument("--backend", default="torch", help="Backend of the throughput runs.")
    ap.add_argument("--threads", type=int, default=None,
                    help="Intra-op threads of the backends (default theirs: one per core).")
    ap.add_argument("--memory-backends", default="torch,onnxruntime", help="Backends of the memory runs.")
    ap.add_argument("--no-memory", action="store_true", help="Skip the memory runs.")
    ap.add_argument("--memory-cases", default=None,
                    help="Memory cases to run, by index (0: 1080p, 1: 4K; default both).")
    ap.add_argument("--memory-timeout", type=float, default=1800, help="Seconds one memory subprocess may take.")
    ap.add_argument("--weights", action="append", default=[], metavar="MODEL=FILE",
                    help="Weights of liif/lte (default: shipped, else random).")
    ap.add_argument("--note", default="", help="A line for the section (e.g. 'contended: training in the background').")
    ap.add_argument("--smoke", action="store_true",
                    help="About a minute: --shrink 8 --rounds 1 --frames 3 --seconds 0 --runs 3 --table-repeats 3 "
                         "--memory-cases 1.")
    ap.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(json.loads(args.memory_case))))
        return
    if args.smoke:
        args.shrink, args.rounds, args.frames, args.seconds, args.runs, args.table_repeats = 8, 1, 3, 0.0, 3, 3
        args.memory_cases = args.memory_cases or "1"
    indices = lambda text: None if text is None else {int(c) for c in text.split(",")}
    args.cases, args.memory_cases = indices(args.cases), indices(args.memory_cases)
    weights = dict(w.split("=", 1) for w in args.weights)
    output = args.output or ROOT / "runs" / f"bench_any_scale-{time.strftime('%Y%m%d-%H%M%S')}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    report = lambda line: print(line, file=sys.stderr, flush=True)

    import av
    import torch

    load, started = os.getloadavg(), time.monotonic()
    body = run_throughput(args, weights, report)
    if not args.no_memory:
        body += run_memory(args, weights, report)
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    versions = [f"torch {torch.__version__}", f"PyAV {av.__version__}"]
    try:
        versions.append(f"onnxruntime {__import__('onnxruntime').__version__}")
    except ImportError:
        pass
    head = (f"\n### Any-scale models on the CPU: LIIF and LTE against ESPCN ({time.strftime('%Y-%m-%d')})\n\n"
            f"{cpu}, {os.cpu_count()} cores, {args.threads or 'default'} backend threads; {', '.join(versions)}. "
            f"`python tools/bench_any_scale.py{' --smoke' if args.smoke else ''}`: {args.rounds} round(s), "
            f"{args.frames} frames end to end, throughput backend {args.backend}"
            f"{f', sizes / {args.shrink}' if args.shrink > 1 else ''}; load average "
            f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; {time.monotonic() - started:.0f} s."
            f"{' ' + args.note if args.note else ''}\n")
    text = head + body
    print(text)
    with open(output, "a") as f:
        f.write(text)
    report(f"appended to {output}")


if __name__ == "__main__":
    main()
