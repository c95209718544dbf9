"""Options shared by several commands, the one way they become a :class:`RunConfig`, and how a
long-running command is stopped (:func:`stop_on_signals`).

Every option defaults to None, so that unset ones are dropped and the preset's (``--for``) or the
config's defaults apply.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from ..config import PRECISIONS, RunConfig, load_preset

__all__ = ["build_config", "degradation_options", "inference_options", "model_options", "parse_noise",
           "preset_option", "stop_on_signals"]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt in the main
    thread: a run stops, drains and finalizes its outputs. SIGINT too is set here, not left to
    Python: a process started with it ignored (a background job of a shell script: ``cmd &``)
    would otherwise ignore Ctrl-C and ``kill -INT`` for ever. The handlers before are restored."""
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stack(*decorators: Callable) -> Callable:
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


model_options = _stack(
    click.option("--model", default=None,
                 help="Model name (default espcn; see `streamsr models`), or auto: ESPCN where one of its "
                      "factors gives the size exactly, else LTE (any scale)."),
    click.option("--scale", type=float, default=None,
                 help="Upscale factor (default: the model's first, 2 for most); any factor (e.g. 2.25) for "
                      "models that take one (liif, lte; see `streamsr models`)."),
    click.option("--size", default=None, metavar="WxH|Np",
                 help="Exact output size instead of --scale: 1920x1080, or a height (1440p) keeping the aspect "
                      "ratio. A fixed-factor model runs its smallest factor that reaches it, then is resized "
                      "(Lanczos)."),
    click.option("--part", default=None, help="Models made of parts (down/up pairs): which part runs."),
)

inference_options = _stack(
    click.option("--backend", default=None, help="auto (fastest measured available), torch, onnxruntime, openvino (CPU), tensorrt or triton."),
    click.option("--device", default=None, help="auto, cpu or cuda."),
    click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default=None,
                 help="Default: fp16 on CUDA, fp32 on CPU. bf16: PyTorch on CUDA, or on CPUs with AVX512-BF16/AMX "
                      "(2-5x faster there, see MODELS.md for the quality); else fp32, said once. auto: the "
                      "fastest measured for the network that loses at most 0.1 dB against fp32."),
    click.option("--weights", type=click.Path(dir_okay=False), default=None,
                 help="Your own .safetensors weights, or the name of shipped alternative weights (IRN x2 and x4: codec, "
                      "trained through libx264 for a lossy link)."),
    click.option("--tile", type=int, default=None, help="Run frames larger than this (LR px a side) tile by tile."),
    click.option("--tile-overlap", type=int, default=None, help="LR pixels neighbouring tiles share (default 16)."),
    click.option("--max-memory", default=None, metavar="SIZE",
                 help="Memory a run may plan to use, e.g. 8G or 512M (default: half of the machine's, and of "
                      "the GPU's). Above it queues shorten, then frames run tile by tile; said once."),
    click.option("--backend-option", "backend_option", multiple=True, metavar="BACKEND.KEY=VALUE",
                 help="An option of a backend's own config, e.g. torch.threads=2, onnxruntime.threads=2, "
                      "tensorrt.max_batch=8 (repeatable; TOML: [backend_options.torch]). Unknown keys are refused."),
    click.option("--compile", "compile_", is_flag=True, default=None,
                 help="PyTorch backend: torch.compile the network (same as --backend-option torch.compile=true)."),
    click.option("--triton-url", default=None, metavar="HOST:PORT",
                 help="Run the network on a Triton Inference Server (gRPC, e.g. gpubox:8001); implies --backend "
                      "triton. More: --backend-option triton.protocol=http, triton.max_in_flight=8."),
    click.option("--triton-model", default=None, metavar="NAME",
                 help="The model's name on the Triton server (default: the network's, e.g. udvd_x2)."),
    click.option("--triton-shm", type=click.Choice(["auto", "system", "cuda", "off"]), default=None,
                 help="Frames to a Triton server on this machine through shared memory (default auto: system "
                      "shared memory when the server is local; cuda needs a GPU on both ends)."),
    click.option("--triton-timeout", type=float, default=None, metavar="SECONDS",
                 help="How long frames wait for an absent Triton server, retries included, before the run fails "
                      "(default 60; live inputs drop the frames arriving meanwhile)."),
)

degradation_options = _stack(
    click.option("--noise", default=None, metavar="SIGMA|auto",
                 help="UDVD: the noise σ on the 0-255 scale it is told, or auto (default: estimated from the "
                      "frames, smoothed over time)."),
    click.option("--blur", type=float, default=None,
                 help="UDVD: the blur width in HR pixels it is told (default 0.5 x scale)."),
)

preset_option = click.option("--for", "preset_name", default=None, metavar="USE",
                             help="Defaults for a use: surveillance, videocall, or a .toml file of run options "
                                  "(options given here win).")


def parse_noise(text: str | None) -> float | None:
    """``--noise``'s one grammar: a σ on the 0–255 scale, or ``auto`` (None: estimate it).

    Raises:
        click.BadParameter: neither.
    """
    if text is None or text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"expected a number or auto, got {text!r}", param_hint="--noise") from None


#: convenience options of the Triton backend -> its config's fields
_TRITON = {"triton_url": "url", "triton_model": "model", "triton_shm": "shm", "triton_timeout": "timeout"}


def _backend_options(pairs: tuple[str, ...], compile_: bool | None, base: dict, triton: dict | None = None) -> dict:
    out = {name: dict(opts) for name, opts in base.items()}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        backend, dot, option = key.partition(".")
        if not (sep and dot and backend and option):
            raise click.BadParameter(f"expected BACKEND.KEY=VALUE, got {pair!r}", param_hint="--backend-option")
        out.setdefault(backend, {})[option] = value
    if compile_:
        out.setdefault("torch", {})["compile"] = True
    if triton:
        out.setdefault("triton", {}).update(triton)
    return out


#: options that exclude each other: one a higher layer gives replaces the other from below
_EITHER = (("scale", "size"),)


def _over(flat: dict, layer: dict) -> None:
    """Lay ``layer``'s options over ``flat``'s."""
    for a, b in _EITHER:
        for mine, other in ((a, b), (b, a)):
            if layer.get(mine) is not None and layer.get(other) is None:
                flat.pop(other, None)
    flat.update(layer)


def build_config(preset_name: str | None, options: dict, defaults: dict | None = None) -> RunConfig:
    """The run's :class:`RunConfig`: a preset's options (``--for``), then ``defaults`` (a cameras
    file's), then the options given on the command line.

    Args:
        preset_name: ``--for``'s value.
        options: the command's options (unset ones are None and dropped); ``noise`` in
            ``--noise``'s grammar, ``backend_option``/``compile_``/``triton_*`` as the CLI gives them
            (``--triton-*`` become the triton backend's options, and imply ``--backend triton``).
        defaults: further defaults below the command line.
    """
    flat: dict = {}
    for layer in (load_preset(preset_name) if preset_name else {}), defaults or {}:
        _over(flat, layer)
    options = dict(options)
    pairs, compile_ = options.pop("backend_option", ()) or (), options.pop("compile_", None)
    triton = {field: options.pop(key) for key, field in _TRITON.items() if options.get(key) is not None}
    for key in _TRITON:
        options.pop(key, None)
    if triton and options.get("backend") is None:
        options["backend"] = "triton"  # --triton-url says where the network runs
    if "noise" in options:
        options["noise"] = parse_noise(options["noise"])
    _over(flat, {k: v for k, v in options.items() if v is not None})
    if pairs or compile_ or triton:
        flat["backend_options"] = _backend_options(tuple(pairs), compile_, flat.get("backend_options", {}), triton)
    if flat.get("backend_options"):
        from ..backends.base import coerce_backend_options

        flat["backend_options"] = coerce_backend_options(flat["backend_options"])  # typos refused now
    return RunConfig.from_options(**flat)


def check_report_path(path: str | None, option: str = "--stats-json") -> None:
    """Refuse, before a long run, a report file that could not be written at its end.

    Raises:
        click.BadParameter: its folder is missing or not writable.
    """
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise click.BadParameter(f"folder {folder} does not exist", param_hint=option)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"folder {folder} is not writable", param_hint=option)
