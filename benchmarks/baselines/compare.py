#!/usr/bin/env python3
"""order_stats (snaptail + simdjson) against the asyncio snapshot-and-clear baseline.

    python3 benchmarks/baselines/compare.py --bin build/os-rel/examples/order_stats \\
        --log /tmp/orders.log --size 200M --runs 5

Writes the log with gen_orders unless it exists, reads it once so that every run reads from the
page cache, then runs each configuration --runs times under /usr/bin/time -v and prints the
median of each figure as a Markdown table. Every program catches up from the first byte and
exits 200 ms after the end of the file:

* lines/s and MB/s are over the program's own "seconds": from its start until its last batch
  was handled, so neither interpreter start-up nor the 200 ms idle wait is counted;
* wall and CPU (user + sys) are /usr/bin/time's, start-up and idle wait included;
* peak RSS is /usr/bin/time's maximum resident set size.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_once(cmd):
    proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True,
                          check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for line in proc.stderr.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            result["rss_mib"] = int(line.split(":")[1]) / 1024
        elif line.startswith("User time (seconds):"):
            result["user"] = float(line.split(":")[1])
        elif line.startswith("System time (seconds):"):
            result["sys"] = float(line.split(":")[1])
        elif line.startswith("Elapsed (wall clock) time"):
            value = line.split(": ", 1)[1]
            minutes, seconds = value.split(":")[-2:]
            result["wall"] = int(minutes) * 60 + float(seconds)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True,
                        help="directory holding order_stats and gen_orders")
    parser.add_argument("--log", default="/tmp/orders.log")
    parser.add_argument("--size", default="200M", help="gen_orders --bytes, if the log is made")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    order_stats = os.path.join(args.bin, "order_stats")
    if not os.path.exists(args.log):
        subprocess.run([os.path.join(args.bin, "gen_orders"), "--bytes", args.size, "--seed",
                        "1", args.log], check=True)
    with open(args.log, "rb") as f:
        while f.read(1 << 24):
            pass

    baseline = [sys.executable, os.path.join(HERE, "asyncio_tailer.py")]
    common = ["--quiet", "--json", "--idle-exit-ms", "200"]
    configs = [
        ("order_stats --parse-threads 1", [order_stats, "--parse-threads", "1"] + common),
        ("order_stats --parse-threads 2", [order_stats, "--parse-threads", "2"] + common),
        ("order_stats --parse-threads 1 --strict",
         [order_stats, "--parse-threads", "1", "--strict"] + common),
        ("asyncio_tailer.py --parse none", baseline + ["--parse", "none"]),
        ("asyncio_tailer.py --parse json", baseline + ["--parse", "json"]),
        ("asyncio_tailer.py --parse json --read-hint 0",
         baseline + ["--parse", "json", "--read-hint", "0"]),
    ]
    size = os.path.getsize(args.log)
    print(f"log: {args.log}, {size / 1e6:.1f} MB; median of {args.runs} runs; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start\n")
    print("| command | lines/s | MB/s | wall s | CPU s | peak RSS MiB | max list len |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, cmd in configs:
        runs = [run_once(cmd + [args.log]) for _ in range(args.runs)]
        med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        list_len = (f"{statistics.median(r['max_list_len'] for r in runs):,.0f}"
                    if "max_list_len" in runs[0] else "-")
        print(f"| `{name}` | {med('lines_per_s'):,.0f} | {med('mb_per_s'):.0f} | "
              f"{med('wall'):.2f} | {statistics.median(r['user'] + r['sys'] for r in runs):.2f} | "
              f"{med('rss_mib'):.0f} | {list_len} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
