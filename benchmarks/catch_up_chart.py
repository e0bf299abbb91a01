#!/usr/bin/env python3
"""Draws bench_tailer's catch-up figures (its --results file) as an SVG bar chart.

    build/release/benchmarks/bench_tailer --catch-up-only --results catch_up.tsv
    python3 benchmarks/catch_up_chart.py catch_up.tsv benchmarks/results/catch_up.svg

One bar per program: MB/s on a linear scale (longer is faster), with the median time and the
instructions per byte callgrind counted (user space only) beside it. The standard library
only: the SVG is written by hand.
"""

import argparse
import sys
from xml.sax.saxutils import escape

# Bar colours by kind of program: the reference tools, the library, the command-line tool.
COLOURS = {
    "reference": "#8c8c8c",
    "library": "#1f6fb4",
    "follow": "#e8832a",
    "baseline": "#f3c79f",
}
LEGEND = [
    ("reference", "coreutils (wc -l, cat, tail -n +1)"),
    ("library", "snaptail library, no-op parser (in-process sink)"),
    ("follow", "snaptail-follow"),
    ("baseline", "snaptail-follow, previous build"),
]


def kind_of(name):
    if name.startswith("snaptail-follow (baseline"):
        return "baseline"
    if name.startswith("snaptail-follow"):
        return "follow"
    if name.startswith("snaptail"):
        return "library"
    return "reference"


def read_results(path):
    """The comment line (what was run) and the rows of a --results file."""
    comment = ""
    rows = []
    with open(path, encoding="utf-8") as f:
        header = None
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                comment = line.lstrip("# ")
                continue
            fields = line.split("\t")
            if header is None:
                header = fields
                continue
            row = dict(zip(header, fields))
            rows.append({
                "name": row["name"],
                "mb_s": float(row["MB/s"]),
                "seconds": float(row["seconds"]),
                "per_byte": float(row["instructions/byte"]),
            })
    return comment, rows


def nice_step(top):
    """A round grid step that gives about five lines up to `top`."""
    for step in (100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000):
        if top / step <= 6:
            return step
    return 50000


def chart(comment, rows, title):
    label_w, bar_w, row_h, top = 330, 430, 24, 96
    width = label_w + bar_w + 250
    height = top + row_h * len(rows) + 50
    peak = max(r["mb_s"] for r in rows)
    step = nice_step(peak)
    scale_top = (int(peak // step) + 1) * step

    def x_of(value):
        return label_w + bar_w * value / scale_top

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="13">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="22" font-size="16" font-weight="bold">{escape(title)}</text>',
        f'<text x="10" y="42" fill="#555555">{escape(comment)}</text>',
    ]
    legend_x = 10
    for kind, text in LEGEND:
        if not any(kind_of(r["name"]) == kind for r in rows):
            continue
        svg.append(f'<rect x="{legend_x}" y="53" width="12" height="12" '
                   f'fill="{COLOURS[kind]}"/>')
        svg.append(f'<text x="{legend_x + 17}" y="64">{escape(text)}</text>')
        legend_x += 30 + 7 * len(text)
    grid_bottom = top + row_h * len(rows)
    value = 0
    while value <= scale_top:
        x = x_of(value)
        svg.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{grid_bottom}" '
                   f'stroke="#e4e4e4"/>')
        svg.append(f'<text x="{x:.1f}" y="{grid_bottom + 15}" text-anchor="middle" '
                   f'font-size="11" fill="#777777">{value:,}</text>')
        value += step
    svg.append(f'<text x="{label_w + bar_w / 2:.0f}" y="{grid_bottom + 32}" '
               f'text-anchor="middle" fill="#555555">MB/s (median of the rounds; longer is '
               f'faster)</text>')
    for i, r in enumerate(rows):
        y = top + i * row_h
        x1 = x_of(r["mb_s"])
        svg.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
                   f'{escape(r["name"])}</text>')
        svg.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(x1 - label_w, 1):.1f}" '
                   f'height="{row_h - 8}" fill="{COLOURS[kind_of(r["name"])]}"/>')
        note = f'{r["mb_s"]:,.0f} MB/s ({r["seconds"] * 1000:.0f} ms)'
        if r["per_byte"] >= 0:
            note += f', {r["per_byte"]:.2f} instr/byte'
        svg.append(f'<text x="{x1 + 6:.1f}" y="{y + 16}" font-size="12">{escape(note)}</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="bench_tailer --results FILE")
    parser.add_argument("svg", help="the chart to write")
    parser.add_argument("--title", default="Catching up on a log in the page cache: MB/s")
    args = parser.parse_args()
    comment, rows = read_results(args.results)
    if not rows:
        sys.exit(f"{args.results}: no figures")
    with open(args.svg, "w", encoding="utf-8") as f:
        f.write(chart(comment, rows, args.title))


if __name__ == "__main__":
    main()
