"""Line plots as SVG, drawn on the server: a series of (time, value) over
the last minutes against its limit. No script draws them, so they show
the same in any browser, in a screenshot, and to a test that reads the
plotted numbers back from the `data-values` attribute."""
from __future__ import annotations

from html import escape

WINDOW = 300.0     # seconds kept and shown at most: the last five minutes
SHORTEST = 30.0    # a young group's plot spans at least this, not five empty minutes


def plot(points: list[tuple[float, float]], now: float, *, label: str, limit: float | None,
         fmt, series: str, width: int = 320, height: int = 110) -> str:
    """points: (unix time, value) oldest first; fmt(value) -> text with its
    unit. The y axis reaches past the limit and the largest value."""
    shown = [(t, v) for t, v in points if now - t <= WINDOW]
    span = min(WINDOW, max(SHORTEST, now - shown[0][0] if shown else 0))
    top = max([v for _, v in shown] + [limit or 0])
    top = top * 1.15 if top > 0 else 1.0
    left, right, up, down = 4, width - 4, 16, height - 14

    def x(t: float) -> float:
        return right - (now - t) / span * (right - left)

    def y(v: float) -> float:
        return down - v / top * (down - up)

    last = shown[-1][1] if shown else None
    summary = (f"{label}: {fmt(last) if last is not None else 'no samples yet'}"
               + (f" of {fmt(limit)}" if limit is not None else ""))
    parts = [f'<svg class="plot" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" data-series="{escape(series)}" '
             f'data-limit="{limit if limit is not None else ""}" '
             f'data-values="{",".join(f"{v:.6g}" for _, v in shown)}" '
             f'aria-label="{escape(summary)}">',
             f"<title>{escape(summary)}</title>",
             f'<rect x="{left}" y="{up}" width="{right - left}" height="{down - up}" '
             'class="frame"/>',
             f'<text x="{left}" y="11" class="label">{escape(label)} '
             f'<tspan class="value">{escape(fmt(last)) if last is not None else "-"}</tspan>'
             f"</text>",
             f'<text x="{right}" y="11" class="axis" text-anchor="end">'
             f"max {escape(fmt(top))}</text>",
             f'<text x="{left}" y="{height - 2}" class="axis">{_ago(span)}</text>',
             f'<text x="{right}" y="{height - 2}" class="axis" text-anchor="end">now</text>']
    if limit is not None:
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
                     'class="limit"/>')
        parts.append(f'<text x="{(left + right) / 2:.0f}" y="{y(limit) - 3:.1f}" class="limit" '
                     f'text-anchor="middle">limit {escape(fmt(limit))}</text>')
    if len(shown) > 1:
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in shown)
        parts.append(f'<polyline points="{coords}" class="line"/>')
    elif shown:
        parts.append(f'<circle cx="{x(shown[0][0]):.1f}" cy="{y(shown[0][1]):.1f}" r="2" '
                     'class="dot"/>')
    parts.append("</svg>")
    return "".join(parts)


def _ago(seconds: float) -> str:
    return f"-{seconds:.0f} s" if seconds < 120 else f"-{seconds / 60:.1f} min"
