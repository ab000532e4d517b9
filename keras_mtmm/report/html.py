"""The run report's HTML building blocks: the page (figures as PNG files, embedded), numbers, tables.

Numbers in tables carry `data-source`/`data-key` attributes naming where
they come from (e.g. `metrics.json`'s `tasks/shape/accuracy`), so a test
can check every printed number against the file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

from keras_mtmm.errors import UserError
from keras_mtmm.report.plots import png_bytes


class Page:
    """Builds the HTML pieces; figures are written as PNG files beside the page and embedded in it."""

    def __init__(self, folder: Path, colours: dict[str, str]):
        self.folder = folder
        self.colours = colours
        self.figures: list[Path] = []

    def figure(self, name: str, figure, caption: str) -> str:
        data = png_bytes(figure)
        path = self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        path.write_bytes(data)
        self.figures.append(path)
        encoded = base64.b64encode(data).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)} <span class='file'>({esc(path.name)})</span></figcaption></figure>"
        )

    @staticmethod
    def skipped(why: str) -> str:
        return f'<p class="skipped">skipped: {esc(why)}</p>'

    def task(self, task: str) -> str:
        return f'<span class="task" style="border-color:{self.colours.get(task, "#999999")}">{esc(task)}</span>'


def read_json(path: Path) -> dict | None:
    """A JSON file of the run folder, None when absent; a corrupt one is a UserError naming it."""
    if not path.is_file():
        return None
    fix = "rerun training (or evaluate.py --output) to rewrite it"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise UserError(str(path), f"not valid JSON ({error})", fix) from None
    if not isinstance(value, dict):  # every JSON file keras_mtmm writes into a run folder is an object
        raise UserError(str(path), f"holds a JSON {type(value).__name__}, not the object keras_mtmm writes", fix)
    return value


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def number(value, key: str | None = None, source: str = "metrics", digits: int = 4, signed: bool = False) -> str:
    """A value as the report prints it (`n/a` for None/NaN); `key` tags it with its path in `source`'s JSON."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "n/a"
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    if key is None:
        return f'<span class="num">{text}</span>'
    return f'<span class="num" data-source="{esc(source)}" data-key="{esc(key)}">{text}</span>'


def table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    """An HTML table; cells are HTML already (escape text with `esc`)."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section(anchor: str, title: str, body: str, intro: str = "") -> tuple[str, str, str]:
    text = f'<section id="{anchor}"><h2>{esc(title)}</h2>' + (f'<p class="intro">{intro}</p>' if intro else "")
    return anchor, title, text + body + "</section>"
