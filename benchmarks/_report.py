"""What the benchmarks share for their output: print the table, then write it to benchmarks/results/."""

from __future__ import annotations

from pathlib import Path


def publish(text: str, path: Path, write: bool = True) -> None:
    """Print `text`; unless `write` is False (--no-write), also write it to `path` and say where."""
    print(text)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
