"""Inline SVG charts, hand-written: no script, no external asset, so the report is one file a
service manager can open offline or attach to an email. Every chart has a <title> and text values
beside the marks, so it reads without colour and with a screen reader."""
from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["RATING_COLOURS", "domain_bars", "heat_grid", "line_chart"]

BEFORE, AFTER, LINE, GRID, INK = "#9aa5b1", "#1d70b8", "#1d70b8", "#d8dde3", "#0b0c0c"
# Diverging, colour-blind safe (ColorBrewer RdYlGn): 1 totally dissatisfied ... 7 totally satisfied.
RATING_COLOURS = {1: "#d73027", 2: "#fc8d59", 3: "#fee08b", 4: "#ffffbf", 5: "#d9ef8b", 6: "#91cf60", 7: "#1a9850"}
FONT = 'font-family="Arial, sans-serif" font-size="12"'


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT}><title>{escape(title)}</title>{"".join(body)}</svg>')


def domain_bars(title: str, rows: Sequence[tuple[str, float | None, float | None]], *, low: float = 1,
                high: float = 7) -> str:
    """Horizontal bar pairs per domain: (label, baseline, latest) on a low-high scale; None is
    drawn as "*" (suppressed). A dashed line marks 4, "in the middle"."""
    label_w, bar_w, row_h = 170, 360, 34
    width, height = label_w + bar_w + 70, 40 + row_h * len(rows) + 30
    x = lambda v: label_w + (v - low) / (high - low) * bar_w  # noqa: E731
    body = [f'<rect x="{label_w}" y="{28 + 4}" width="12" height="10" fill="{BEFORE}"/>'
            f'<text x="{label_w + 16}" y="{28 + 13}">first (entry)</text>'
            f'<rect x="{label_w + 110}" y="{28 + 4}" width="12" height="10" fill="{AFTER}"/>'
            f'<text x="{label_w + 126}" y="{28 + 13}">latest</text>']
    top = 50
    for tick in range(int(low), int(high) + 1):
        dash = ' stroke-dasharray="4 3" stroke-width="2"' if tick == 4 else ""
        body.append(f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{top + row_h * len(rows)}" '
                    f'stroke="{GRID}"{dash}/>'
                    f'<text x="{x(tick):.1f}" y="{top + row_h * len(rows) + 16}" text-anchor="middle">{tick}</text>')
    for i, (label, before, after) in enumerate(rows):
        y = top + i * row_h
        body.append(f'<text x="{label_w - 8}" y="{y + 20}" text-anchor="end">{escape(label)}</text>')
        for offset, value, colour in ((4, before, BEFORE), (17, after, AFTER)):
            if value is None:
                body.append(f'<text x="{label_w + 4}" y="{y + offset + 10}" fill="{INK}">*</text>')
                continue
            body.append(f'<rect x="{label_w}" y="{y + offset}" width="{max(x(value) - label_w, 1):.1f}" height="12" '
                        f'fill="{colour}"><title>{escape(label)}: {value:.2f}</title></rect>'
                        f'<text x="{x(value) + 4:.1f}" y="{y + offset + 10}">{value:.2f}</text>')
    body.insert(0, f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>')
    return _svg(width, height, title, body)


def line_chart(title: str, points: Sequence[tuple[str, float | None]], *, low: float = 1, high: float = 7,
               caption: str = "") -> str:
    """One line over labelled points (months, dates); None leaves a gap and a "*" on the axis."""
    left, plot_w, plot_h, top = 40, max(60 * len(points), 300), 220, 40
    width, height = left + plot_w + 30, top + plot_h + 50
    step = plot_w / max(len(points) - 1, 1)
    x = lambda i: left + (i * step if len(points) > 1 else plot_w / 2)  # noqa: E731
    y = lambda v: top + (high - v) / (high - low) * plot_h  # noqa: E731
    body = [f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>']
    if caption:
        body.append(f'<text x="0" y="32">{escape(caption)}</text>')
    for tick in range(int(low), int(high) + 1):
        body.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" stroke="{GRID}"/>'
                    f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    segment: list[str] = []
    segments: list[list[str]] = [segment]
    for i, (label, value) in enumerate(points):
        body.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{escape(label)}</text>')
        if value is None:
            body.append(f'<text x="{x(i):.1f}" y="{top + plot_h - 4}" text-anchor="middle">*</text>')
            segment = []
            segments.append(segment)
            continue
        segment.append(f"{x(i):.1f},{y(value):.1f}")
        body.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="4" fill="{LINE}">'
                    f'<title>{escape(label)}: {value:.2f}</title></circle>'
                    f'<text x="{x(i):.1f}" y="{y(value) - 9:.1f}" text-anchor="middle">{value:.2f}</text>')
    for part in segments:
        if len(part) > 1:
            body.append(f'<polyline points="{" ".join(part)}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    return _svg(width, height, title, body)


def heat_grid(title: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[int | None]]]) -> str:
    """Domains down, DIALOGs across, each cell coloured by its rating with the number in it: one
    person's trajectory per domain at a glance. Blank: not rated."""
    label_w, cell_w, cell_h, top = 210, 100, 26, 50
    width, height = label_w + cell_w * len(columns) + 10, top + cell_h * len(rows) + 10
    body = [f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>']
    for j, column in enumerate(columns):
        body.append(f'<text x="{label_w + j * cell_w + cell_w / 2:.1f}" y="{top - 8}" text-anchor="middle">'
                    f'{escape(column)}</text>')
    for i, (label, values) in enumerate(rows):
        y = top + i * cell_h
        short = label if len(label) <= 30 else label[:29] + "…"
        body.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(short)}'
                    f'<title>{escape(label)}</title></text>')
        for j, value in enumerate(values):
            fill = RATING_COLOURS.get(value, "#ffffff")
            body.append(f'<rect x="{label_w + j * cell_w}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="{fill}" stroke="{GRID}"/>')
            if value is not None:
                body.append(f'<text x="{label_w + j * cell_w + cell_w / 2 - 1:.1f}" y="{y + 17}" '
                            f'text-anchor="middle">{value}</text>')
    return _svg(width, height, title, body)
