#!/usr/bin/env python3
"""Catch-up on one order log: wc -l, snaptail (order_stats) and the asyncio baseline.

    python3 benchmarks/bench_orders.py --bin build/release/examples/order_stats \\
        [--log PATH] [--size 1G] [--runs 5] [--svg [OUT.svg]] [--markdown OUT.md] [--extra]

In one run, on the same generated order log (gen_orders --seed 1; by default
${TMPDIR:-/tmp}/snaptail-bench/orders_<size>.log, written once and reused), read from the page
cache, each program reads the whole log from its first byte:

* `wc -l`, the reference for reading speed;
* `order_stats --no-parse`, with 1 and 2 parse threads (snaptail, each line's record is its
  length: no JSON; with 2 threads, both also read the backlog, as parsing keeps up);
* `order_stats --parse-threads 1` and `--parse-threads 2` (snaptail + simdjson On-Demand);
* `baselines/asyncio_tailer.py --parse none` and `--parse json` (the asyncio snapshot-and-clear
  design that snaptail replaces);
* with --extra also `order_stats --strict` and the baseline with a bare readlines().

Each runs --runs times under /usr/bin/time -v, the programs in turn within each round; the
median of each figure goes into one Markdown table, with the machine above it and the targets
below it. A target's ratio is the median of the rounds' ratios (the two programs of a round ran
back to back, on the same machine state), with their range. The report also says how much CPU
time other processes and the hypervisor (steal) took while the programs ran.

order_stats and the baseline exit 200 ms after reaching the end of the file; their lines/s and
MB/s are over their own "seconds", from start to their last handled batch (no interpreter
start-up, no idle wait). order_stats runs with --linger-ms 0: its last batch goes out at the end
of the log, not after a fixed 20 ms wait for more lines; the baseline keeps the 50 ms batch step
of the design it reproduces. wc -l's are over its wall time. CPU time (user + sys) and peak RSS
are /usr/bin/time's; wall time is measured around it, to the millisecond. The snaptail programs
also run on a log 1/8 the size, to show that their peak RSS does not depend on it.

A benchmark, not a test: it exits 0 whatever the figures (a target missed is printed as FAIL)
and 1 only when something is broken: a program failed, a line count differs from wc -l's, or
order_stats and the baseline count different orders, statuses, errors or notional.
"""

import argparse
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = os.path.join(HERE, "baselines", "asyncio_tailer.py")
IDLE_EXIT_MS = "200"
TIMEOUT_S = 1800  # per program run; a hang is a failure, not a slow result
RSS_TOLERANCE_MIB = 2.0
TARGETS = {"noop": 12.0, "json": 15.0, "threads": 1.6}


class Broken(Exception):
    """Something failed or disagreed: the figures cannot be trusted (exit status 1)."""


# --- the log -------------------------------------------------------------------------------


def parse_size(text):
    """'1G', '256M', '64K' (1024-based, as gen_orders --bytes) or a plain byte count."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"a size like 1G, 256M or 1048576, not '{text}'")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    value = int(match.group(1)) * scale
    if value <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return value


def size_label(n):
    """1 << 30 -> '1g', 128 << 20 -> '128m': for file names."""
    for shift, unit in ((30, "g"), (20, "m"), (10, "k")):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def human_size(n):
    """1 << 30 (or a line more) -> '1 GiB', 1.5 * (1 << 30) -> '1.5 GiB'."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            value = n / (1 << shift)
            if abs(value - round(value)) < 0.01:
                return f"{round(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{n} B"


def bench_dir():
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", "snaptail-bench")


def ensure_log(gen_orders, path, size, reuse_any):
    """Writes `size` bytes of orders (whole lines, so a little more) to `path` unless a log of
    that size is already there; with `reuse_any`, any existing file is used as it is."""
    if os.path.exists(path):
        have = os.path.getsize(path)
        if reuse_any or size <= have < size + (64 << 10):
            return
        os.remove(path)  # another size, or cut short by an interrupted run
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial"
    if os.path.exists(partial):
        os.remove(partial)  # gen_orders appends
    progress(f"writing {size / (1 << 20):.0f} MiB of orders to {path}")
    subprocess.run([gen_orders, "--bytes", str(size), "--seed", "1", partial], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.replace(partial, path)


def warm(path):
    """Reads the file once, so that the runs after read it from the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 24):
            pass


# --- running one program -------------------------------------------------------------------


def parse_time_v(stderr):
    """user, sys and peak RSS from GNU time -v's report."""
    found = {}
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            found["rss_mib"] = int(line.split(":")[1]) / 1024
        elif line.startswith("User time (seconds):"):
            found["user"] = float(line.split(":")[1])
        elif line.startswith("System time (seconds):"):
            found["sys"] = float(line.split(":")[1])
    if len(found) != 3:
        raise Broken("could not read /usr/bin/time -v's report:\n" + stderr[-2000:])
    return found


def run_measured(cmd):
    """Runs cmd under /usr/bin/time -v; returns its stdout and user, sys, wall, rss_mib."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Broken(f"`{shlex.join(cmd)}` took more than {TIMEOUT_S} s") from None
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise Broken(f"`{shlex.join(cmd)}` exited with status {proc.returncode}:\n"
                     + proc.stderr[-2000:])
    result = parse_time_v(proc.stderr)
    result["wall"] = wall
    return proc.stdout, result


@dataclass
class Program:
    key: str
    label: str  # as shown in the table and the chart
    kind: str  # "wc", "snaptail" or "python"
    mode: str  # "none" or "json" (the parse mode, for the "x Python" column); "" for wc
    argv: list  # without the log's path
    baseline: str = ""  # key of the Python row this one is compared with
    runs: list = field(default_factory=list)  # one dict per run
    small_runs: list = field(default_factory=list)  # on the 1/8 log (snaptail only)

    def run(self, log, size):
        stdout, result = run_measured(self.argv + [log])
        if self.kind == "wc":
            result["lines"] = int(stdout.split()[0])
            result["bytes"] = size
            result["seconds"] = result["wall"]
            result["lines_per_s"] = result["lines"] / result["wall"]
            result["mb_per_s"] = size / result["wall"] / 1e6
        else:
            try:
                summary = json.loads(stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                raise Broken(f"`{shlex.join(self.argv)}` printed no JSON summary:\n"
                             + stdout[-2000:]) from None
            result.update(summary)
            seconds = summary["seconds"]
            # Recomputed from the exact counts: the programs round their own.
            result["lines_per_s"] = summary["lines"] / seconds if seconds > 0 else 0.0
            result["mb_per_s"] = summary["bytes"] / seconds / 1e6 if seconds > 0 else 0.0
        result["cpu"] = result["user"] + result["sys"]
        return result


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def round_ratios(a, b, key="mb_per_s"):
    """a's figure over b's, round by round: each pair ran minutes apart at most, on the same
    machine state, so their ratio is steadier than the ratio of two medians."""
    return [x[key] / y[key] for x, y in zip(a.runs, b.runs)]


# --- what else ran -------------------------------------------------------------------------


def cpu_times():
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return (user + nice + system + irq + softirq) / tick, steal / tick


def own_cpu():
    """CPU seconds of this script and every program it ran (and waited for)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def programs(bin_dir, extra):
    order_stats = os.path.join(bin_dir, "order_stats")
    # Linger 0: the last batch goes out as soon as the log's end is reached, rather than after
    # a fixed 20 ms wait for more lines that would count against the reading speed.
    os_common = ["--quiet", "--json", "--idle-exit-ms", IDLE_EXIT_MS, "--linger-ms", "0"]
    py = [sys.executable, BASELINE, "--idle-exit-ms", IDLE_EXIT_MS]
    rows = [
        Program("wc", "wc -l", "wc", "", ["wc", "-l"]),
        Program("noop1", "order_stats --no-parse", "snaptail", "none",
                [order_stats, "--no-parse"] + os_common, baseline="py_none"),
        Program("noop2", "order_stats --no-parse --parse-threads 2", "snaptail", "none",
                [order_stats, "--no-parse", "--parse-threads", "2"] + os_common,
                baseline="py_none"),
        Program("pt1", "order_stats --parse-threads 1", "snaptail", "json",
                [order_stats, "--parse-threads", "1"] + os_common, baseline="py_json"),
        Program("pt2", "order_stats --parse-threads 2", "snaptail", "json",
                [order_stats, "--parse-threads", "2"] + os_common, baseline="py_json"),
        Program("py_none", "asyncio_tailer.py --parse none", "python", "none",
                py + ["--parse", "none"], baseline="py_none"),
        Program("py_json", "asyncio_tailer.py --parse json", "python", "json",
                py + ["--parse", "json"], baseline="py_json"),
    ]
    if extra:
        rows += [
            Program("strict", "order_stats --parse-threads 1 --strict", "snaptail", "json",
                    [order_stats, "--parse-threads", "1", "--strict"] + os_common,
                    baseline="py_json"),
            Program("py_slurp", "asyncio_tailer.py --parse json --read-hint 0", "python",
                    "json", py + ["--parse", "json", "--read-hint", "0"], baseline="py_json"),
        ]
    return rows


# --- checks --------------------------------------------------------------------------------


def check(rows, size, small_size, small_lines):
    """What must hold whatever the machine: every program saw every line and byte, and the
    JSON parsers agree. Returns a list of problems."""
    problems = []
    by_key = {p.key: p for p in rows}
    lines = by_key["wc"].runs[0]["lines"]
    for p in rows:
        for runs, want_lines, want_bytes, which in ((p.runs, lines, size, "log"),
                                                    (p.small_runs, small_lines, small_size,
                                                     "1/8 log")):
            for r in runs:
                if r["lines"] != want_lines:
                    problems.append(f"{p.label} on the {which}: {r['lines']} lines, "
                                    f"wc -l says {want_lines}")
                if r["bytes"] != want_bytes:
                    problems.append(f"{p.label} on the {which}: {r['bytes']} bytes, "
                                    f"the file has {want_bytes}")
                if p.key in ("noop1", "noop2", "py_none") and r["line_bytes"] + r["lines"] != r["bytes"]:
                    problems.append(f"{p.label} on the {which}: the lines' lengths add up to "
                                    f"{r['line_bytes']} + {r['lines']} newlines, not "
                                    f"{r['bytes']} bytes")
    reference = by_key["py_json"].runs[0]
    for p in rows:
        if p.mode != "json" or p.key == "py_json":
            continue
        for r in p.runs:
            for key in ("orders", "other_lines", "parse_errors", "coins", "statuses"):
                if r[key] != reference[key]:
                    problems.append(f"{p.label}: {key} {r[key]}, but "
                                    f"asyncio_tailer.py --parse json: {reference[key]}")
            a, b = r["filled_notional"], reference["filled_notional"]
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=0.01):
                problems.append(f"{p.label}: filled notional {a}, but "
                                f"asyncio_tailer.py --parse json: {b}")
    return problems


def targets(rows, nproc):
    """(what, measured, required, passed) for each target of the issue. Ratios are the median
    of the rounds' ratios, with their range."""
    by_key = {p.key: p for p in rows}
    out = []

    def ratio_target(what, a, b, target):
        ratios = round_ratios(by_key[a], by_key[b])
        mid = statistics.median(ratios)
        spread = f" (rounds: {min(ratios):.2f}-{max(ratios):.2f}x)" if len(ratios) > 1 else ""
        out.append((what, f"{mid:.2f}x{spread}", f">= {target:g}x", mid >= target))

    # Two threads, as the baseline has (its reader and a 2-thread pool); one thread is in the
    # table for comparison.
    ratio_target("no-op tailer, 2 parse threads, vs the Python baseline's no-op "
                 "(`--parse none`), MB/s", "noop2", "py_none", TARGETS["noop"])
    ratio_target("simdjson, 2 parse threads, vs the Python baseline's JSON parse, MB/s", "pt2",
                 "py_json", TARGETS["json"])
    ratio_target(f"2 parse threads vs 1, MB/s ({nproc} CPUs)", "pt2", "pt1", TARGETS["threads"])
    parts = []
    passed = True
    for p in rows:
        if p.kind != "snaptail" or not p.small_runs:
            continue
        # The largest over the rounds: the claim is a bound on memory, so the worst run counts.
        big = max(r["rss_mib"] for r in p.runs)
        small = max(r["rss_mib"] for r in p.small_runs)
        passed = passed and abs(big - small) <= RSS_TOLERANCE_MIB
        parts.append(f"{p.label.removeprefix('order_stats ')}: {big:.1f} vs {small:.1f}")
    out.append((f"peak RSS of the snaptail runs independent of the log's size "
                f"(full log vs 1/8, largest of the rounds, MiB; within +-{RSS_TOLERANCE_MIB:g} "
                f"MiB)",
                "; ".join(parts), f"+-{RSS_TOLERANCE_MIB:g} MiB", passed))
    return out


# --- the report ----------------------------------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("nan")


def build_info(bin_dir):
    """'g++ 12.2.0, Release' from the CMake cache above bin_dir, if there is one."""
    d = os.path.abspath(bin_dir)
    while True:
        cache = os.path.join(d, "CMakeCache.txt")
        if os.path.exists(cache):
            break
        parent = os.path.dirname(d)
        if parent == d:
            return "unknown build"
        d = parent
    values = {}
    with open(cache) as f:
        for line in f:
            m = re.match(r"(CMAKE_CXX_COMPILER|CMAKE_BUILD_TYPE):\w+=(.*)", line.strip())
            if m:
                values[m.group(1)] = m.group(2)
    compiler = values.get("CMAKE_CXX_COMPILER", "")
    version = ""
    if compiler:
        try:
            first = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                   check=True).stdout.splitlines()[0]
            m = re.search(r"(\d+\.\d+(\.\d+)?)", first)
            version = f"{os.path.basename(compiler)} {m.group(1) if m else first}"
        except (OSError, subprocess.CalledProcessError, IndexError):
            version = os.path.basename(compiler)
    return f"{version or 'unknown compiler'}, {values.get('CMAKE_BUILD_TYPE') or 'no build type'}"


def tool_version(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def fmt_int(x):
    return f"{x:,.0f}"


def fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def fmt_ratio(x):
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def report(args, rows, machine, size, lines, small_size, target_rows, problems):
    by_key = {p.key: p for p in rows}
    wc = median(by_key["wc"].runs, "mb_per_s")
    out = []
    out.append(f"Command: `{machine['command']}`")
    out.append("")
    out.append(f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), "
               f"{machine['mem']:.1f} GiB RAM, Linux {machine['kernel']}; "
               f"order_stats built with {machine['build']}; Python {machine['python']}; "
               f"{machine['wc']}.")
    out.append(f"Other processes used {machine['other_cpu']:.1f} CPU-s during the "
               f"{machine['elapsed']:.0f} s of runs ({machine['other_share']:.0%} of one CPU); "
               f"the hypervisor's steal time was {machine['steal']:.1f} s.")
    out.append(f"Log: `{args.log}`, {human_size(size)} ({size:,} bytes), {lines:,} lines "
               f"(gen_orders --seed 1), read from the page cache; median of {args.runs} "
               f"run{'s' if args.runs != 1 else ''}.")
    out.append("")
    out.append("| program | lines/s | MB/s | wall s | CPU s | peak RSS MiB | x `wc -l` | "
               "x Python |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in rows:
        mbs = median(p.runs, "mb_per_s")
        vs_python = "-"
        if p.baseline:
            vs_python = fmt_ratio(mbs / median(by_key[p.baseline].runs, "mb_per_s"))
        out.append(f"| `{p.label}` | {fmt_int(median(p.runs, 'lines_per_s'))} | "
                   f"{fmt_rate(mbs)} | {median(p.runs, 'wall'):.2f} | "
                   f"{median(p.runs, 'cpu'):.2f} | {median(p.runs, 'rss_mib'):.1f} | "
                   f"{fmt_ratio(mbs / wc)} | {vs_python} |")
    out.append("")
    out.append("x Python: MB/s over the baseline's in the same parse mode (no-op: "
               "`--parse none`; JSON: `--parse json`). lines/s and MB/s: over each program's "
               "own time to its last batch (wc -l: its wall time). Wall and CPU s: start-up and "
               f"the {IDLE_EXIT_MS} ms idle exit included. order_stats runs with --linger-ms 0, "
               "so that its last batch goes out at the end of the log rather than 20 ms later; "
               "the baseline keeps the 50 ms batch step of the design it reproduces.")
    list_lens = [f"{median(p.runs, 'max_list_len'):,.0f} lines (`{p.label}`)"
                 for p in rows if p.kind == "python"]
    out.append("The baseline's list of lines grew to at most " + ", ".join(list_lens) + ".")
    out.append("")
    out.append(f"Targets (peak RSS also measured on a log of {human_size(small_size)}):")
    out.append("")
    out.append("| target | measured | required | result |")
    out.append("|---|---|---|---|")
    for what, measured, required, passed in target_rows:
        out.append(f"| {what} | {measured} | {required} | {'PASS' if passed else 'FAIL'} |")
    if machine["other_share"] > 0.1 or machine["steal"] > 0.05 * machine["elapsed"]:
        out.append("")
        out.append("Note: the machine was not quiet (see above): other processes or the "
                   "hypervisor took CPU time from these runs, the parallel ones (2 parse "
                   "threads, the baseline's pool) most.")
    if problems:
        out.append("")
        out.append("BROKEN:")
        out += [f"- {problem}" for problem in problems]
    return "\n".join(out) + "\n"


# --- the chart -----------------------------------------------------------------------------


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def chart_svg(rows, machine, size, runs):
    """A horizontal bar chart of MB/s on a log scale, grouped by what is parsed."""
    by_key = {p.key: p for p in rows}
    groups = [("reference", ["wc"]), ("no parsing", ["noop1", "noop2", "py_none"]),
              ("JSON parsing", ["pt1", "pt2", "py_json"])]
    extra = [p.key for p in rows if p.key in ("strict", "py_slurp")]
    if extra:
        groups.append(("JSON parsing, variants", extra))
    colors = {"wc": "#8c8c8c", "snaptail": "#1f6fb4", "python": "#e8832a"}

    mbs = {p.key: median(p.runs, "mb_per_s") for p in rows}
    lo = 10 ** math.floor(math.log10(min(mbs.values())))
    hi = max(mbs.values()) * 1.1
    # 12 px monospace: about 7.3 px a character.
    label_w = 20 + int(7.3 * max(len(p.label) for p in rows))
    bar_w, value_w = 380, 270
    width = label_w + bar_w + value_w + 20
    row_h, group_h, top = 26, 24, 90
    n_rows = sum(len(keys) for _, keys in groups)
    height = top + n_rows * row_h + len(groups) * group_h + 50

    def x_of(v):
        return label_w + bar_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) -
                                                                      math.log10(lo))

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
           f'font-size="13">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="22" font-size="16" font-weight="bold">Catching up on a '
           f'{human_size(size)} order log from the page cache: MB/s (log scale)</text>',
           f'<text x="10" y="42" fill="#555555">{xml_escape(machine["nproc_text"])}, '
           f'Linux {xml_escape(machine["kernel"])}, others used '
           f'{machine["other_share"]:.0%} of a CPU; median of {runs} '
           f'run{"s" if runs != 1 else ""}; longer is faster</text>']
    legend_x = 10
    for kind, text in (("snaptail", "snaptail (examples/order_stats)"),
                       ("python", "Python asyncio snapshot-and-clear baseline"),
                       ("wc", "wc -l")):
        svg.append(f'<rect x="{legend_x}" y="53" width="12" height="12" fill="{colors[kind]}"/>')
        svg.append(f'<text x="{legend_x + 17}" y="64">{xml_escape(text)}</text>')
        legend_x += 40 + int(7 * len(text))
    # Decade grid lines with their labels at the bottom.
    grid_bottom = height - 40
    decade = lo
    while decade <= hi * 1.0001:
        for minor in (2, 5):
            if decade * minor <= hi:
                x = x_of(decade * minor)
                svg.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{grid_bottom}" '
                           f'stroke="#eeeeee"/>')
                svg.append(f'<text x="{x:.1f}" y="{grid_bottom + 15}" text-anchor="middle" '
                           f'font-size="10" fill="#999999">{decade * minor:,.0f}</text>')
        x = x_of(decade)
        svg.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{grid_bottom}" '
                   f'stroke="#dddddd"/>')
        svg.append(f'<text x="{x:.1f}" y="{grid_bottom + 16}" text-anchor="middle" '
                   f'fill="#555555">{decade:,.0f}</text>')
        decade *= 10
    svg.append(f'<text x="{label_w + bar_w / 2:.0f}" y="{grid_bottom + 32}" '
               f'text-anchor="middle" fill="#555555">MB/s</text>')

    y = top
    for title, keys in groups:
        svg.append(f'<text x="10" y="{y + 16}" font-weight="bold" fill="#333333">'
                   f'{xml_escape(title)}</text>')
        y += group_h
        for key in keys:
            p = by_key[key]
            v = mbs[key]
            x1 = x_of(v)
            svg.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" '
                       f'font-family="Menlo, Consolas, monospace" font-size="12">'
                       f'{xml_escape(p.label)}</text>')
            svg.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(x1 - label_w, 1):.1f}" '
                       f'height="{row_h - 8}" fill="{colors[p.kind]}"/>')
            note = f"{fmt_rate(v)} MB/s"
            if p.kind == "snaptail":
                note += f" · {fmt_ratio(v / mbs[p.baseline])}x Python"
            if p.kind != "wc":
                note += f" · {median(p.runs, 'rss_mib'):.0f} MiB RSS"
            svg.append(f'<text x="{x1 + 6:.1f}" y="{y + 17}">{xml_escape(note)}</text>')
            y += row_h
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


# --- main ----------------------------------------------------------------------------------


def progress(message):
    print(f"bench_orders: {message}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    parser.add_argument("--bin", required=True,
                        help="directory holding order_stats and gen_orders")
    parser.add_argument("--log", help="the order log (written with gen_orders if missing; "
                        "default ${TMPDIR:-/tmp}/snaptail-bench/orders_<size>.log)")
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"),
                        help="log size when it is written (1024-based K, M, G; default 1G)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each program (median)")
    parser.add_argument("--svg", nargs="?", metavar="OUT.svg",
                        const=os.path.join(HERE, "results", "orders_<size>.svg"),
                        help="write a bar chart of MB/s (default path: "
                             "benchmarks/results/orders_<size>.svg)")
    parser.add_argument("--markdown", metavar="OUT.md",
                        help="also write the report (machine, table, targets) to this file")
    parser.add_argument("--extra", action="store_true",
                        help="also run order_stats --strict and the baseline with a bare "
                             "readlines() (--read-hint 0); not part of the targets")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for tool in ("/usr/bin/time", shutil.which("wc")):
        if not tool or not os.access(tool, os.X_OK):
            parser.error("needs GNU time as /usr/bin/time and wc (Debian: apt-get install time)")
    gen_orders = os.path.join(args.bin, "gen_orders")
    for exe in (gen_orders, os.path.join(args.bin, "order_stats")):
        if not os.access(exe, os.X_OK):
            parser.error(f"{exe} not found (build the order_stats and gen_orders targets; "
                         "order_stats needs simdjson)")

    command = shlex.join(["python3", sys.argv[0]] + sys.argv[1:])
    busy_start, steal_start = cpu_times()
    own_start = own_cpu()
    started = time.monotonic()
    explicit_log = args.log is not None
    if not explicit_log:
        args.log = os.path.join(bench_dir(), f"orders_{size_label(args.size)}.log")
    try:
        ensure_log(gen_orders, args.log, args.size, reuse_any=explicit_log)
        size = os.path.getsize(args.log)
        small_size = max((size if explicit_log else args.size) // 8, 1)
        small_log = os.path.join(bench_dir(), f"orders_{size_label(small_size)}.log")
        ensure_log(gen_orders, small_log, small_size, reuse_any=False)
        small_size = os.path.getsize(small_log)
        small_lines = int(subprocess.run(["wc", "-l", small_log], capture_output=True,
                                         text=True, check=True).stdout.split()[0])

        rows = programs(args.bin, args.extra)
        for round_ in range(args.runs):
            # The programs in turn within each round, so that each sees the same machine.
            warm(args.log)
            for p in rows:
                progress(f"run {round_ + 1}/{args.runs}: {p.label}")
                p.runs.append(p.run(args.log, size))
            warm(small_log)
            for p in rows:
                if p.kind == "snaptail" and p.key != "strict":
                    progress(f"run {round_ + 1}/{args.runs}: {p.label} on the 1/8 log")
                    p.small_runs.append(p.run(small_log, small_size))
    except Broken as e:
        print(f"bench_orders: broken: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"bench_orders: `{shlex.join(e.cmd)}` failed with status {e.returncode}",
              file=sys.stderr)
        return 1
    busy_end, steal_end = cpu_times()
    elapsed = time.monotonic() - started
    other_cpu = max(0.0, (busy_end - busy_start) - (own_cpu() - own_start))

    nproc = len(os.sched_getaffinity(0))
    machine = {
        "command": command,
        "nproc": nproc,
        "nproc_text": f"{nproc} CPUs ({cpu_model()})",
        "cpu": cpu_model(),
        "mem": mem_total_gib(),
        "kernel": platform.release(),
        "build": build_info(args.bin),
        "python": platform.python_version(),
        "wc": tool_version(["wc", "--version"]),
        "elapsed": elapsed,
        "other_cpu": other_cpu,
        "other_share": other_cpu / elapsed if elapsed > 0 else 0.0,
        "steal": steal_end - steal_start,
    }
    lines = rows[0].runs[0]["lines"]
    problems = check(rows, size, small_size, small_lines)
    text = report(args, rows, machine, size, lines, small_size, targets(rows, nproc), problems)
    print(text, end="")
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    if args.svg:
        svg_path = args.svg.replace("<size>", size_label(args.size))
        os.makedirs(os.path.dirname(os.path.abspath(svg_path)), exist_ok=True)
        with open(svg_path, "w", encoding="utf-8") as f:
            f.write(chart_svg(rows, machine, size, args.runs))
        progress(f"chart written to {svg_path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
