"""Small SVG charts for the benchmark page, drawn without a plotting library: grouped horizontal bars
(one bar per value) and points on lines (one circle per point). Every text is XML-escaped, so a chart
is well-formed whatever its labels hold."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

# One colour per series, in order (a colour-blind-safe palette).
COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
WIDTH = 720
LABEL_WIDTH = 170
BAR_HEIGHT = 14
GAP = 8
TOP = 40
LEGEND_WIDTH = 140
LEGEND_COLUMNS = 5
FONT = 'font-family="sans-serif" font-size="12"'

Bars = Sequence[tuple[str, Sequence[tuple[str, float]]]]


def _svg(height: float, title: str, body: list[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label={quoteattr(title)}>'
    )
    heading = f'<text x="10" y="22" {FONT} font-weight="bold">{escape(title)}</text>'
    return "\n".join([head, f"<title>{escape(title)}</title>", heading, *body, "</svg>"]) + "\n"


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.2f}"


def bar_chart(title: str, groups: Bars, unit: str = "", reference: float | None = None) -> str:
    """Horizontal bars, in groups: each group a label and its (series, value) bars, drawn to one scale
    from zero. `reference` draws a dashed line at that value (a target, or 1.0 for a ratio)."""
    series = list(dict.fromkeys(name for _, bars in groups for name, _ in bars))
    colour = {name: COLOURS[n % len(COLOURS)] for n, name in enumerate(series)}
    top = max([value for _, bars in groups for _, value in bars] + [reference or 0.0]) or 1.0
    # Room for the longest group label (about 7 px a character at this size).
    label_width = max(LABEL_WIDTH, 7 * max((len(label) for label, _ in groups), default=0) + 20)
    plot = WIDTH - label_width - 80
    body, legend = _legend(series, colour)
    y = TOP + 20 + legend
    for label, bars in groups:
        body.append(f'<text x="10" y="{y + BAR_HEIGHT - 3}" {FONT}>{escape(label)}</text>')
        for name, value in bars:
            length = max(0.0, value) / top * plot
            body.append(
                f'<rect class="bar" x="{label_width}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" '
                f'fill="{colour[name]}"><title>{escape(f"{label}, {name}: {_number(value)} {unit}")}'
                "</title></rect>"
            )
            body.append(
                f'<text x="{label_width + length + 4:.1f}" y="{y + BAR_HEIGHT - 3}" {FONT}>'
                f"{escape(_number(value))}</text>"
            )
            y += BAR_HEIGHT + 2
        y += GAP
    if reference is not None:
        x = label_width + reference / top * plot
        body.append(
            f'<line x1="{x:.1f}" y1="{TOP + 14 + legend}" x2="{x:.1f}" y2="{y}" stroke="#555" '
            'stroke-dasharray="4 3"/>'
        )
    if unit:
        body.append(
            f'<text x="{label_width}" y="{TOP + 8 + legend}" {FONT} fill="#555">{escape(unit)}</text>'
        )
    return _svg(y + 10, title, body)


def _legend(series: Sequence[str], colour: dict[str, str]) -> tuple[list[str], int]:
    """A key under the title, LEGEND_COLUMNS names a row (none for a single series); with its height."""
    if len(series) < 2:
        return [], 0
    items = []
    for n, name in enumerate(series):
        left, y = 10 + LEGEND_WIDTH * (n % LEGEND_COLUMNS), TOP + 4 + 16 * (n // LEGEND_COLUMNS)
        items.append(f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="{colour[name]}"/>')
        items.append(f'<text x="{left + 14}" y="{y}" {FONT}>{escape(name)}</text>')
    return items, 16 * ((len(series) - 1) // LEGEND_COLUMNS + 1)


def line_chart(
    title: str,
    lines: Mapping[str, Sequence[tuple[float, float]]],
    x_label: str,
    y_label: str,
    *,
    log_x: bool = False,
) -> str:
    """Points joined by lines, one line per series: a circle per (x, y) point, both axes from their
    data's range (x on a log scale with `log_x`, for table sizes that grow tenfold), y from zero."""
    points = [point for series in lines.values() for point in series]
    colour = {name: COLOURS[n % len(COLOURS)] for n, name in enumerate(lines)}

    def fx(value: float) -> float:
        return math.log10(value) if log_x and value > 0 else value

    xs = [fx(x) for x, _ in points] or [0.0]
    low, high = min(xs), max(xs)
    if high == low:
        low, high = low - 1, high + 1
    y_top = max([y for _, y in points] + [0.0]) * 1.1 or 1.0
    body, legend = _legend(list(lines), colour)
    left, right, top, bottom = 80, WIDTH - 20, TOP + 20 + legend, TOP + 260 + legend
    body += [
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#555"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#555"/>',
        f'<text x="{(left + right) / 2:.0f}" y="{bottom + 34}" {FONT} text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="10" y="{top - 8}" {FONT}>{escape(y_label)}</text>',
        f'<text x="{left - 4}" y="{top + 4}" {FONT} text-anchor="end">{escape(_number(y_top))}</text>',
        f'<text x="{left - 4}" y="{bottom}" {FONT} text-anchor="end">0</text>',
    ]

    def place(x: float, y: float) -> tuple[float, float]:
        return (
            left + (fx(x) - low) / (high - low) * (right - left - 20) + 10,
            bottom - y / y_top * (bottom - top),
        )

    for x in sorted({x for x, _ in points}):
        px, _ = place(x, 0)
        body.append(
            f'<text x="{px:.1f}" y="{bottom + 16}" {FONT} text-anchor="middle">{escape(_number(x))}</text>'
        )
    for name, series in lines.items():
        placed = [place(x, y) for x, y in sorted(series)]
        if len(placed) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in placed)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour[name]}"/>')
        for (x, y), (px, py) in zip(sorted(series), placed, strict=True):
            body.append(
                f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour[name]}">'
                f"<title>{escape(f'{name}: {_number(x)}, {_number(y)}')}</title></circle>"
            )
    return _svg(bottom + 50, title, body)
