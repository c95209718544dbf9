"""Command line: ``streamsr run | models | export | build-engine | engines | train | eval | bench``.

The only package that prints for the user or exits. A StreamSRError becomes one line on stderr
and exit code 1; Ctrl-C/SIGTERM stop the run cleanly (the output keeps every frame encoded so
far) and exit with 130. One module per command family; the options they share are in
:mod:`streamsr.cli.options`.
"""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from ..errors import StreamSRError

__all__ = ["main"]

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


class _Notes(logging.Handler):
    """Library warnings (e.g. "building a TensorRT engine, this takes a while") as one line each;
    FFmpeg's own messages (streamsr.ffmpeg) stay out of the user's way."""

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("streamsr.ffmpeg"):
            click.echo(f"streamsr: note: {record.getMessage()}", err=True)


def _setup_logging() -> None:
    logger = logging.getLogger("streamsr")
    if not any(isinstance(h, _Notes) for h in logger.handlers):
        logger.addHandler(_Notes(logging.WARNING))


def fail(message: str) -> None:
    """One line on stderr, exit code 1."""
    click.echo(f"streamsr: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


class _Group(click.Group):
    """Turns library errors into one line and an exit code, whatever the command."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StreamSRError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            click.echo("streamsr: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streamsr")
def main() -> None:
    """Make video sharper with super-resolution networks, in real time.

    \b
    Examples:
      streamsr run input.mp4 -o output.mp4 --model espcn --scale 2
      cat in.ts | streamsr run - -o - | ffplay -
      streamsr models
      streamsr export --model espcn --scale 2 -o espcn_x2.onnx
    """
    _setup_logging()


from . import bench, cluster, modelcmds, preview, run, train, triton  # noqa: F401  (register the commands)
