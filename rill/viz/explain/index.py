"""index.html (and numbers.json) for a folder of explained views: each view's title, two sentences of plain
explanation, its figures and the numbers behind them."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import View

__all__ = ["write_index"]

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
img{max-width:100%;image-rendering:pixelated;margin:.3em 0}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ddd;padding:.2em .5em;
text-align:left;vertical-align:top}.skip{color:#777}code{background:#f4f4f4;padding:0 .2em}"""


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _section(view: View) -> str:
    parts = [
        f'<section id="{view.name}"><h2>{html.escape(view.title)}</h2>',
        f"<p>{html.escape(view.text)}</p>",
    ]
    if view.skipped:
        parts.append(f'<p class="skip">Not drawn for this model: {html.escape(view.skipped)}.</p>')
    for name in view.figures:
        parts.append(f'<img src="{html.escape(name)}" alt="{html.escape(view.title)}">')
    if view.numbers:
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in view.numbers.items()
        )
        parts.append(f"<table>{rows}</table>")
    return "\n".join(parts) + "</section>"


def write_index(views: Sequence[View], out: str | Path, title: str, facts: dict[str, Any]) -> Path:
    """Write out/index.html and out/numbers.json (every view's numbers, the run's facts); returns the page."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    facts_html = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in facts.items()
    )
    toc = " · ".join(f'<a href="#{v.name}">{html.escape(v.title.split(":")[0])}</a>' for v in views)
    body = "\n".join(_section(v) for v in views)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><table>{facts_html}</table>"
        f"<p>{toc}</p>\n{body}\n</body></html>\n"
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    record = {
        "facts": facts,
        "views": {
            v.name: {"title": v.title, "figures": v.figures, "numbers": v.numbers, "skipped": v.skipped}
            for v in views
        },
    }
    (out / "numbers.json").write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return out / "index.html"
