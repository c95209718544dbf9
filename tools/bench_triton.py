"""The remote inference tier (Triton) against the local backend, on this machine (issue 14).

    python tools/bench_triton.py --model espcn --scale 2 --output BENCHMARKS.md
    python tools/bench_triton.py --quick --output /tmp/triton.md        # a check that it runs

Starts the tritonserver bundled in nvidia-pytriton on a repository written by
``export_repository(..., platform="python")`` (ONNX Runtime inside the server) and measures:

1. end-to-end fps and capture-to-encode latency p50/p95 of 1, 4 and 8 concurrent streams
   (``run_cameras``: one shared client, Triton's dynamic batching) through Triton with and without
   system shared memory, and through the local ONNX Runtime backend (same model, same hub);
2. what the remote tier costs per frame at 360p and 1080p input: the client's round trip minus the
   server's own time for the request (serialization, transport, copies), with and without shared
   memory, and the bytes a request moves;
3. a capacity model on paper: how many 1080p cameras one H100 Triton box serves for ESPCN and
   UDVD, from the counted GFLOP per frame (``streamsr.bench.frame_gflop``), an assumed share of
   the GPU's peak, and the bytes each frame moves over the network.

On a machine where other jobs run (training), the numbers are contended: say so where they are quoted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from report import publish

from streamsr.backends import create_backend
from streamsr.backends.triton_repo import export_repository
from streamsr.backends.triton_server import TritonServer
from streamsr.bench import frame_gflop
from streamsr.config import RunConfig
from streamsr.io.sink import SinkConfig
from streamsr.models import get_model
from streamsr.pipeline.cameras import Camera, run_cameras
from streamsr.synth import write_clip

#: H100 SXM dense FP16/BF16 tensor-core peak, TFLOPS (NVIDIA's datasheet; 1979 is with sparsity)
H100_TFLOPS = 989.0


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def streams(args, server: TritonServer, tmp: Path) -> str:
    """Table 1: k concurrent streams through the hub, local vs Triton (shm off / system)."""
    clips = [write_clip(tmp / f"in{i}.mkv", frames=args.frames, size=_size(args.size), codec="libx264")
             for i in range(max(args.streams))]
    sink = SinkConfig(codec="libx264", preset="ultrafast")
    triton = lambda shm: {"backend": "triton", "backend_options": {"triton": {"url": server.grpc_url, "shm": shm}}}
    modes = {"local onnxruntime": {"backend": "onnxruntime"}, "triton, no shm": triton("off"),
             "triton, system shm": triton("system")}
    rows = []
    for k in args.streams:
        for label, mode in modes.items():
            config = RunConfig(model=args.model, scale=args.scale, sink=sink, queue_size=2, **mode)
            cams = [Camera(f"s{i}", str(clips[i]), str(tmp / f"out{i}.mkv")) for i in range(k)]
            t0 = time.perf_counter()
            results = run_cameras(cams, config)
            wall = time.perf_counter() - t0
            errors = [str(r.error) for r in results if r.error is not None]
            if errors:
                raise SystemExit(f"{label}, {k} streams: {errors[0]}")
            frames = sum(r.stats.frames_out for r in results)
            p50 = np.median([r.stats.latency["p50_ms"] for r in results])
            p95 = max(r.stats.latency["p95_ms"] for r in results)
            remote = results[0].stats.remote[-1] if results[0].stats.remote else None
            batch = remote["server"].get("batch_mean") if remote else None
            rows.append(f"| {k} | {label} | {frames / wall:.1f} | {p50:.0f} | {p95:.0f} | "
                        f"{batch if batch is not None else '-'} |")
            print(rows[-1], file=sys.stderr)
    return ("| streams | inference | fps (all streams) | latency p50 ms | latency p95 ms | server batch (mean) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def remote_cost(args, server: TritonServer) -> str:
    """Table 2: round trip − server time per request, 360p and 1080p input, shm off/system."""
    variant = get_model(args.model).variant(args.scale)
    rows = []
    for label, (w, h), repeats in (("360p", (640, 360), args.repeats), ("1080p", (1920, 1080), max(1, args.repeats // 2))):
        x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
        for shm in ("off", "system"):
            backend = create_backend("triton", variant, device="cpu",
                                     options={"triton": {"url": server.grpc_url, "shm": shm, "timeout": 600.0}})
            try:
                backend.infer(x)  # warm-up: allocations, shared memory regions
                before = _success(server, backend.model)
                t0 = time.perf_counter()
                for _ in range(repeats):
                    backend.infer(x)
                round_trip = (time.perf_counter() - t0) / repeats * 1000
                after = _success(server, backend.model)
            finally:
                backend.close()
            server_ms = (after[1] - before[1]) / max(1, after[0] - before[0]) / 1e6
            moved = (x.nbytes + 3 * h * w * args.scale ** 2 * 4) / 1e6
            rows.append(f"| {label} ({w}x{h}) | {shm} | {moved:.1f} | {round_trip:.1f} | {server_ms:.1f} | "
                        f"{round_trip - server_ms:.1f} |")
            print(rows[-1], file=sys.stderr)
    return ("| input | shm | MB per request (in + out, float32) | round trip ms | server ms (queue, copies, compute) | "
            "remote cost ms |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def _success(server: TritonServer, model: str) -> tuple[int, int]:
    """(requests, total ns) the server spent on successful requests of ``model`` (queue + compute)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        success = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]["success"]
        return int(success.get("count", 0)), int(success.get("ns", 0))
    finally:
        client.close()


def capacity(args) -> str:
    """Table 3: 1080p cameras per H100 box, compute-bound and network-bound."""
    rows = []
    for name, scale in (("espcn", 2), ("udvd", 2)):
        gflop = frame_gflop(name, scale, 1920, 1080)
        cams_compute = H100_TFLOPS * 1e3 * args.efficiency / (gflop * args.fps)
        variant = get_model(name).variant(scale)
        in_bytes = sum(i.channels for i in variant.inputs) * 1920 * 1080 * 4
        out_bytes = 3 * 1920 * 1080 * scale ** 2 * 4
        per_camera = (in_bytes + out_bytes) * args.fps  # bytes/s through the server's network
        cams_net = args.link_gbit * 1e9 / 8 / per_camera
        rows.append(f"| {name} x{scale} | {gflop:.0f} | {cams_compute:.0f} | {(in_bytes + out_bytes) / 1e6:.0f} | "
                    f"{per_camera * 8 / 1e9:.1f} | {cams_net:.1f} | {min(cams_compute, cams_net):.1f} |")
    return (f"Assumed: H100 SXM {H100_TFLOPS:g} dense FP16 TFLOPS at {args.efficiency:.0%} of peak for these "
            f"convolutions (TensorRT, fp16), {args.fps:g} fps cameras, a {args.link_gbit:g} Gbit/s link; frames "
            "travel as float32 RGB (and UDVD's maps as float32 planes), as the client sends them today.\n\n"
            "| network | GFLOP per 1080p frame | cameras (compute) | MB per frame (in + out) | Gbit/s per camera | "
            "cameras (network) | cameras (the lower) |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--size", default="640x360", help="stream frame size (LR)")
    ap.add_argument("--frames", type=int, default=100, help="frames per stream")
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--repeats", type=int, default=6, help="requests per remote-cost measurement (1080p: half)")
    ap.add_argument("--instances", type=int, default=1, help="model instances in the server")
    ap.add_argument("--efficiency", type=float, default=0.3, help="share of the GPU's peak the capacity model assumes")
    ap.add_argument("--fps", type=float, default=25.0, help="camera frame rate of the capacity model")
    ap.add_argument("--link-gbit", type=float, default=100.0, help="the Triton box's network link, Gbit/s")
    ap.add_argument("--quick", action="store_true", help="a check that it runs: 1 and 4 streams of 16 small frames")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.size, args.frames, args.streams, args.repeats = "320x180", 16, "1,4", 2
    args.streams = [int(s) for s in args.streams.split(",")]
    with TemporaryDirectory() as tmp:
        export_repository(get_model(args.model).variant(args.scale), Path(tmp) / "repo", platform="python",
                          max_batch=8, instances=args.instances)
        with TritonServer(Path(tmp) / "repo") as server:
            table1 = streams(args, server, Path(tmp))
            table2 = remote_cost(args, server)
    text = (f"\n### Triton remote tier vs local ({args.model} x{args.scale}){' (quick)' if args.quick else ''}\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} cores; tritonserver from nvidia-pytriton (Python "
            "backend running ONNX Runtime on the CPU) on loopback, the client in the same machine, x264 ultrafast, "
            f"queues of 2. Streams: {args.frames} frames of {args.size} each (latency: capture-to-encode in file "
            "mode, queueing included).\n\n" + table1 +
            "\nWhat the remote tier costs per frame (one request; round trip minus the server's queue + compute):\n\n"
            + table2 + "\nCapacity of one H100 Triton box for 1080p cameras, on paper:\n\n" + capacity(args))
    publish(text, args.output)


if __name__ == "__main__":
    main()
