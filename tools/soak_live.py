"""Soak test for 24/7 cameras: a long live run with the camera server killed and restarted at
intervals, sampling this process's memory (RSS), open file descriptors and threads, to show that
reconnections leak nothing.

    python tools/soak_live.py --minutes 10 --restart-every 60 --output BENCHMARKS.md

Starts tests/rtsp_server.py (H.264 + G.711 audio, 25 fps), records it with `upscale_video` in
real-time mode, and compares the samples after the first restart with the last ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import RtspServer
from report import publish

from streamsr import RunConfig
from streamsr.io.live import LiveConfig
from streamsr.pipeline.job import RunHandle, upscale_video


def _sample() -> tuple[float, int, int]:
    """(RSS in MiB, open file descriptors, threads) of this process."""
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir("/proc/self/fd")), threading.active_count()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--restart-every", type=float, default=60, help="seconds between server restarts")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    server = RtspServer(size=args.size, audio=True).start()
    handle, result, samples = RunHandle("soak"), {}, []
    stop = threading.Event()
    live = LiveConfig(read_timeout=2.0, open_timeout=3.0, backoff_initial=0.2, backoff_max=1.0, reconnect_max_wait=60)
    with TemporaryDirectory() as tmp:
        out = Path(tmp) / "soak.mkv"

        def run():
            result["stats"] = upscale_video(server.url(), out, RunConfig(model=args.model, scale=2, live=live),
                                            duration=args.minutes * 60, handle=handle, stop_event=stop)

        worker = threading.Thread(target=run)
        start = time.monotonic()
        worker.start()
        next_restart, restarts = start + args.restart_every, 0
        while worker.is_alive():
            worker.join(10)
            now = time.monotonic()
            if not worker.is_alive():
                break  # the run is over: what is left is no longer the run's footprint
            samples.append((now - start, *_sample(), handle.frames_out))
            print(f"{samples[-1][0]:6.0f} s  rss {samples[-1][1]:7.1f} MiB  fds {samples[-1][2]:3d}  "
                  f"threads {samples[-1][3]:2d}  frames {samples[-1][4]}", flush=True)
            if now >= next_restart and now - start < args.minutes * 60 - args.restart_every / 2:
                server.stop()
                time.sleep(2)
                server.start()
                restarts += 1
                next_restart = now + args.restart_every
        size_mib = out.stat().st_size / 2**20 if out.exists() else 0
    server.stop()
    stats = result["stats"]
    after_first = next(s for s in samples if s[0] > args.restart_every + 20)
    last = samples[-1]
    text = (f"\n### Soak: {args.minutes:g} min live recording, camera restarted every {args.restart_every:g} s\n\n"
            f"`python tools/soak_live.py --minutes {args.minutes:g} --restart-every {args.restart_every:g}`: "
            f"GStreamer RTSP camera {args.size} @ 25 fps with G.711 audio on localhost, {args.model} x2, "
            f"real-time mode; {platform.machine()}, {os.cpu_count()} cores. Samples of this process after the "
            "first restart and at the end.\n\n"
            "| frames in | frames out | dropped | reconnects | recording | RSS MiB (after 1st restart -> end) "
            "| open fds | threads |\n|---|---|---|---|---|---|---|---|\n"
            f"| {stats.frames_in} | {stats.frames_out} | {stats.dropped} | {stats.reconnects} of {restarts} restarts "
            f"| {size_mib:.0f} MiB | {after_first[1]:.0f} -> {last[1]:.0f} | {after_first[2]} -> {last[2]} "
            f"| {after_first[3]} -> {last[3]} |\n")
    publish(text, args.output)


if __name__ == "__main__":
    main()
