"""Shared by the measuring tools: print a Markdown section and append it to a results file."""

from __future__ import annotations

from pathlib import Path


def publish(text: str, output: Path | None) -> None:
    """Print ``text``; append it to ``output`` (BENCHMARKS.md, say) when given."""
    print(text)
    if output:
        with open(output, "a") as f:
            f.write(text)
