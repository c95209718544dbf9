"""The peer baseline of ``streamsr bench --peer``: what a user could script in 40 lines, against
``streamsr run`` as a whole process, on the same clip, rounds interleaved; and the realistic bound
of the machine (the network and the codecs sharing its cores).

The script (:data:`NAIVE_SCRIPT`) is what the issue measured: PyAV decode → rgb24 → float →
ONNX Runtime ``session.run`` per frame → clamp, round → PyAV libx264. It is given the exported
graph as a file (a user would have one), so it pays no export; both are timed as whole processes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NAIVE_SCRIPT", "PeerResult", "codec_only_fps", "peer_table", "realistic_bound", "run_peer", "upscaled_frames"]

NAIVE_SCRIPT = r'''
import sys, av, numpy as np, onnxruntime as ort
src, graph, dst, crf, preset = sys.argv[1:6]
session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
with av.open(src) as inp, av.open(dst, "w") as out:
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    stream = None
    for frame in inp.decode(vin):
        x = frame.to_ndarray(format="rgb24").astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        y = session.run(None, {name: x})[0][0]
        img = np.clip(y.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if stream is None:
            stream = out.add_stream("libx264", rate=vin.average_rate or 25)
            stream.width, stream.height, stream.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            stream.options = {"crf": crf, "preset": preset}
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
'''


@dataclass(frozen=True)
class PeerResult:
    """Wall seconds of each round (whole processes), and what they make of each other.

    Args:
        frames: frames in the clip.
        naive: the script's wall seconds per round.
        streamsr: ``streamsr run``'s wall seconds per round.
        loop_fps: the rate ``streamsr run`` ran its frames at in each round (its ``--stats-json``).
    """

    frames: int
    naive: list[float]
    streamsr: list[float]
    loop_fps: list[float]

    @property
    def speedup(self) -> float:
        """How many times faster streamsr is than the script (medians)."""
        return statistics.median(self.naive) / statistics.median(self.streamsr)

    def as_dict(self) -> dict:
        return {"frames": self.frames, "naive_s": [round(t, 2) for t in self.naive],
                "streamsr_s": [round(t, 2) for t in self.streamsr], "speedup_median": round(self.speedup, 3),
                "speedup_best": round(min(self.naive) / min(self.streamsr), 3)}


def realistic_bound(model_fps: float, codec_fps: float) -> float:
    """The most frames a second the machine can give when the network (``model_fps`` alone, on
    every core) and the decode + encode (``codec_fps`` alone, on every core) share the cores: each
    frame costs the sum of the two times."""
    return 1.0 / (1.0 / model_fps + 1.0 / codec_fps)


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def run_peer(clip: Path, graph: Path, run_args: list[str], *, frames: int, rounds: int = 3, crf: int = 18,
             preset: str = "veryfast") -> PeerResult:
    """Time the naive script and ``streamsr run`` on ``clip``, interleaved, ``rounds`` each.

    Args:
        clip: the input.
        graph: the exported ONNX graph of the network the run uses (the script loads it).
        run_args: ``streamsr run`` options after the input and output (model, scale, backend...).
        frames: frames in the clip (reported).
    """
    naive, ours, loop = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "naive.py"
        script.write_text(NAIVE_SCRIPT)
        for i in range(rounds):
            naive.append(_timed([sys.executable, str(script), str(clip), str(graph), f"{tmp}/naive.mp4", str(crf),
                                 preset]))
            stats = Path(tmp) / f"stats{i}.json"
            ours.append(_timed([sys.executable, "-m", "streamsr.cli", "run", str(clip), "-o", f"{tmp}/ours{i}.mp4",
                                "--crf", str(crf), "--preset", preset, "-q", "--stats-json", str(stats), *run_args]))
            loop.append(json.loads(stats.read_text())["fps"])
    return PeerResult(frames, naive, ours, loop)


def upscaled_frames(backend, clip: Path, out_size: tuple[int, int]) -> list:
    """Every frame of ``clip`` through ``backend`` as a run puts it out: H×W×3 uint8 RGB of
    ``out_size`` (width, height)."""
    import av

    from .evaluate import Upscaler

    up = Upscaler(backend)
    with av.open(str(clip)) as inp:
        return [up(f.to_ndarray(format="rgb24"), (out_size[1], out_size[0])) for f in inp.decode(video=0)]


def codec_only_fps(clip: Path, outputs: list, *, crf: int = 18, preset: str = "veryfast",
                   out: Path | None = None) -> float:
    """Frames a second of decoding ``clip`` and encoding ``outputs`` with libx264 on every core, no
    network: the codecs' share of a run. The encoder must get the run's own output frames (made
    beforehand, :func:`upscaled_frames`): x264 codes a blank 720p frame three times as fast.

    Args:
        clip: the input.
        outputs: H×W×3 uint8 RGB frames, one per frame of ``clip``.
        out: where the encoded clip goes (default: a temporary file).
    """
    import av

    height, width = outputs[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp, av.open(str(clip)) as inp, \
            av.open(str(out or Path(tmp) / "o.mp4"), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        inp.streams.video[0].thread_type = "AUTO"
        start, n = time.perf_counter(), 0
        for frame, rgb in zip(inp.decode(video=0), outputs, strict=True):
            frame.to_ndarray(format="rgb24")  # what a run converts
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")):
                dst.mux(packet)
            n += 1
        for packet in stream.encode():
            dst.mux(packet)
        return n / (time.perf_counter() - start)


def peer_table(config, width: int, height: int, frames: int, rounds: int, report=lambda line: None, *,
               backend: str = "onnxruntime", precision: str = "fp32") -> str:
    """``streamsr bench --peer``: the naive script against ``streamsr run`` (whole processes,
    interleaved), and streamsr's in-loop fps against the realistic bound, as a Markdown table.

    Args:
        config: the run's settings (model, scale, backend options such as torch.compile; the CPU).
        width, height: the synthetic clip's size.
        frames: its length.
        rounds: rounds of each.
        backend, precision: what ``streamsr run`` runs on (the script: ONNX Runtime fp32).
    """
    from .backends import create_backend
    from .backends.export import cached_onnx
    from .bench import model_only_fps, run_geometry, synth_clip

    config, geometry, variant = run_geometry(config, width, height)
    options = [f"{b}.{k}={str(v).lower() if isinstance(v, bool) else v}"
               for b, opts in config.backend_options.items() for k, v in opts.items()]
    args = ["--model", config.model, "--backend", backend, "--precision", precision, "--device", "cpu",
            *(["--scale", str(config.scale)] if config.scale else []),
            *(a for o in options for a in ("--backend-option", o))]
    with tempfile.TemporaryDirectory() as tmp:
        clip = synth_clip(Path(tmp) / "clip.mp4", width, height, frames)
        graph = Path(tmp) / "net.onnx"
        graph.write_bytes(cached_onnx(variant, precision="fp32", weights=config.weights)[0])
        report(f"peer: {rounds} rounds of the naive script and streamsr run, {frames} frames {width}x{height}")
        result = run_peer(clip, graph, args, frames=frames, rounds=rounds)
        loop_fps = statistics.median(result.loop_fps)
        loaded = create_backend(backend, variant, device="cpu", precision=precision, options=config.backend_options)
        model = model_only_fps(loaded, width, height, 1)
        ran = f"{loaded.name} {loaded.precision}" + (" compiled" if config.backend_options.get(loaded.name, {}).get("compile") else "")
        outputs = upscaled_frames(loaded, clip, geometry.out_size)
        loaded.close()
        codecs = codec_only_fps(clip, outputs)
    bound = realistic_bound(model, codecs)
    d = result.as_dict()
    return "\n".join([
        (f"### Peer baseline: {variant.name}, {width}x{height}, {frames} frames, streamsr on {ran}, the script on "
         "ONNX Runtime fp32, CPU"),
        "",
        "| | naive script (s) | streamsr run (s) | streamsr faster (median / best) |",
        "|---|---|---|---|",
        (f"| whole process, {rounds} rounds interleaved | {d['naive_s']} | {d['streamsr_s']} | "
        f"{d['speedup_median']}x / {d['speedup_best']}x |"),
        "",
        (f"Realistic bound: network alone {model:.1f} fps and codecs alone (on its output frames) {codecs:.1f} fps sharing the cores: "
        f"{bound:.1f} fps; streamsr ran its frames at {loop_fps:.1f} fps (median of "
        f"{', '.join(f'{f:.1f}' for f in result.loop_fps)}), {loop_fps / bound:.2f} of it."),
    ])

