"""``streamsr triton export-repo | serve``: the remote inference tier (Triton Inference Server)."""

from __future__ import annotations

import signal

import click

from ..errors import BackendUnavailableError
from . import main

__all__ = ["export_repo", "serve", "triton"]


@main.group()
def triton():
    """Triton Inference Server: write a model repository for a network, or serve one here.

    \b
    On a GPU box (NVIDIA's container has the ONNX Runtime and TensorRT backends):
      streamsr triton export-repo --model udvd --scale 2 --platform onnxruntime_onnx -o repo/
      docker run --gpus all --rm -p8000:8000 -p8001:8001 -p8002:8002 -v $PWD/repo:/models \\
          nvcr.io/nvidia/tritonserver:24.10-py3 tritonserver --model-repository=/models
      streamsr run rtsp://cam/s -o cam.mkv --model udvd --scale 2 --triton-url gpubox:8001
    \b
    On this machine (the tritonserver bundled in nvidia-pytriton serves Python-backend models):
      streamsr triton export-repo --model espcn --scale 2 --platform python -o repo/
      streamsr triton serve repo/ --grpc-port 8001
    """


@triton.command("export-repo")
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=float, default=None, help="The factor whose network to export (default: the model's first).")
@click.option("--part", default=None, help="Models made of parts: which part.")
@click.option("--platform", type=click.Choice(["onnxruntime_onnx", "tensorrt_plan", "python"]),
              default="onnxruntime_onnx", show_default=True,
              help="ONNX graph, TensorRT engine (built here: run it on the GPU that serves it), or a Python-backend "
                   "model running ONNX Runtime (what nvidia-pytriton's server can serve).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="Most frames the server batches together.")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances per device.")
@click.option("--kind", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="Where instances run (auto: GPU, CPU for python).")
@click.option("--max-queue-delay-us", type=int, default=2000, show_default=True,
              help="How long the dynamic batcher may hold a request to fill a batch.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Your own .safetensors weights.")
@click.option("--name", default=None, help="The model's name in the repository (default: the network's, e.g. udvd_x2).")
@click.option("--threads", type=int, default=0, help="python: ONNX Runtime threads per instance (0: its default).")
@click.option("--profile", default=None, metavar="MIN,OPT,MAX",
              help="tensorrt_plan: the engine's shapes (NxCxHxW; default 1x3x32x32,1x3x360x640,Bx3x1080x1920).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="The repository folder.")
def export_repo(model, scale, part, platform, max_batch, instances, kind, max_queue_delay_us, precision, weights, name,
                threads, profile, output):
    """Write a network as a model of a Triton repository: model file, config.pbtxt (inputs, dims,
    dynamic batching, instance groups), checked with Triton's ModelConfig protobuf."""
    from ..backends.engine import ShapeProfile
    from ..backends.triton_repo import export_repository
    from .modelcmds import _variant

    variant = _variant(model, scale, part)
    folder = export_repository(
        variant, output, platform=platform, name=name, max_batch=max_batch, instances=instances, kind=kind,
        max_queue_delay_us=max_queue_delay_us, precision=precision, weights=weights, threads=threads,
        profile=ShapeProfile.from_text(profile) if profile else None)
    click.echo(f"wrote {folder} ({variant.name}, {platform}, inputs {', '.join(variant.input_names)}; "
               f"max batch {max_batch}, {instances} instance(s)); serve it with: streamsr triton serve {output}")


@triton.command()
@click.argument("repo", type=click.Path(exists=True, file_okay=False))
@click.option("--grpc-port", type=int, default=8001, show_default=True, help="0: a free port.")
@click.option("--http-port", type=int, default=8000, show_default=True, help="0: a free port.")
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="0: a free port.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Where to listen (0.0.0.0: every interface).")
def serve(repo, grpc_port, http_port, metrics_port, address):
    """Serve REPO with a tritonserver from PATH, or the one bundled in nvidia-pytriton (Python-backend
    models only; for trying the remote tier on one machine: production uses NVIDIA's container).
    Runs until Ctrl-C."""
    from ..backends.triton_server import TritonServer

    server = TritonServer(repo, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, address=address)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.start()
        click.echo(f"serving {repo}: gRPC {server.grpc_url}, HTTP {server.http_url}, metrics "
                   f"http://{address}:{server.metrics_port}/metrics; try: streamsr run IN -o OUT --triton-url "
                   f"{server.grpc_url} (Ctrl-C stops)", err=True)
        code = server.process.wait()
        raise BackendUnavailableError(f"tritonserver exited with {code}: {server.log_tail()}")
    except KeyboardInterrupt:
        click.echo("streamsr: stopping tritonserver", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
