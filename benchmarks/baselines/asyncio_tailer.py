#!/usr/bin/env python3
"""The design snaptail replaces, kept as a benchmark baseline.

An asyncio watcher of an order-status log (one JSON object per line):

* a reader task appends the lines of each ``readlines()`` call to a shared list;
* a batch step runs every 50 ms: it copies the list and clears it (snapshot-and-clear),
  then parses the copy in a 2-thread ThreadPoolExecutor, half per thread, and waits for both.

For the benchmark it reads PATH from its first byte, catches up, and stops once it is at the end
of the file and nothing more has arrived for --idle-exit-ms (200 ms). It then prints one JSON
object: lines, seconds (from start until the last batch was parsed, so without the idle wait),
MB/s, peak RSS, the longest the list grew, and the counts (comparable with
`order_stats --json`).

    python3 asyncio_tailer.py --parse json /tmp/orders.log

--parse none hands the snapshot to the pool all the same, and the workers go through its lines
as --parse json does but only add up their lengths (like `order_stats --no-parse`).
--read-hint is readlines()'s size hint (default 256 KiB, snaptail's read size); 0 means a bare
readlines(), which on catch-up reads the whole file into the list in one call.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

STATUSES = ("open", "filled", "canceled", "triggered", "rejected")


class Result:
    """What one worker found in its slice of a snapshot."""

    __slots__ = ("lines", "line_bytes", "orders", "other_lines", "parse_errors", "counts",
                 "notional")

    def __init__(self):
        self.lines = 0
        self.line_bytes = 0  # --parse none: the sum of the lines' lengths (with their newline)
        self.orders = 0
        self.other_lines = 0
        self.parse_errors = 0
        self.counts = {}  # (coin, status) -> orders
        self.notional = {}  # coin -> sum of px * sz over filled orders

    def merge(self, other):
        self.lines += other.lines
        self.line_bytes += other.line_bytes
        self.orders += other.orders
        self.other_lines += other.other_lines
        self.parse_errors += other.parse_errors
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        for coin, value in other.notional.items():
            self.notional[coin] = self.notional.get(coin, 0.0) + value


def parse_none(lines, lo, hi):
    """The no-op parse: the same loop over the lines as parse_json, taking only each line's
    length, as `order_stats --no-parse` does (its record is the line's length)."""
    result = Result()
    result.lines = hi - lo
    line_bytes = 0
    for i in range(lo, hi):
        line_bytes += len(lines[i])
    result.line_bytes = line_bytes
    return result


def parse_json(lines, lo, hi):
    """The same rules as order_stats: an object with "order" is an order line and must have
    seq, status, and order.coin/side/limitPx/sz; other JSON is counted as other lines."""
    result = Result()
    result.lines = hi - lo
    counts = result.counts
    notional = result.notional
    loads = json.loads
    for i in range(lo, hi):
        try:
            obj = loads(lines[i])
        except ValueError:
            result.parse_errors += 1
            continue
        if not isinstance(obj, dict) or "order" not in obj:
            result.other_lines += 1
            continue
        try:
            order = obj["order"]
            seq = obj["seq"]
            status = obj["status"]
            coin = order["coin"]
            side = order["side"]
            px = float(order["limitPx"])
            sz = float(order["sz"])
            if (type(seq) is not int or seq < 0 or type(status) is not str
                    or type(coin) is not str or side not in ("B", "A")):
                raise ValueError("bad field")
        except (KeyError, TypeError, ValueError):
            result.parse_errors += 1
            continue
        if status not in STATUSES:
            status = "other"
        key = (coin, status)
        counts[key] = counts.get(key, 0) + 1
        if status == "filled":
            notional[coin] = notional.get(coin, 0.0) + px * sz
        result.orders += 1
    return result


class State:
    def __init__(self):
        self.buffer = []  # the shared list: the reader appends, the batch step swaps it out
        self.max_list_len = 0
        self.reader_done = False
        self.last_parsed = None
        self.batches = 0
        self.bytes = 0
        self.total = Result()


async def reader(path, state, read_hint, idle_exit, poll):
    loop = asyncio.get_running_loop()
    carry = ""
    with open(path, "r", encoding="utf-8") as f:
        last_data = loop.time()
        while True:
            lines = f.readlines(read_hint) if read_hint > 0 else f.readlines()
            if lines:
                # An incomplete last line (the writer is mid-line) waits for its end.
                if carry:
                    lines[0] = carry + lines[0]
                    carry = ""
                if not lines[-1].endswith("\n"):
                    carry = lines.pop()
                state.buffer.extend(lines)
                state.max_list_len = max(state.max_list_len, len(state.buffer))
                last_data = loop.time()
                await asyncio.sleep(0)  # let the batch step run between chunks
            elif loop.time() - last_data >= idle_exit:
                break
            else:
                await asyncio.sleep(poll)
        state.bytes = os.fstat(f.fileno()).st_size
    state.reader_done = True


async def batcher(state, pool, parse, interval):
    loop = asyncio.get_running_loop()
    next_step = loop.time()
    while True:
        next_step += interval
        await asyncio.sleep(max(0.0, next_step - loop.time()))
        # Snapshot and clear.
        snapshot = state.buffer.copy()
        state.buffer.clear()
        if not snapshot:
            if state.reader_done:
                return
            continue
        half = (len(snapshot) + 1) // 2
        parts = await asyncio.gather(
            loop.run_in_executor(pool, parse, snapshot, 0, half),
            loop.run_in_executor(pool, parse, snapshot, half, len(snapshot)),
        )
        for part in parts:
            state.total.merge(part)
        state.batches += 1
        state.last_parsed = time.perf_counter()


async def main_async(args):
    state = State()
    parse = parse_json if args.parse == "json" else parse_none
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        await asyncio.gather(
            reader(args.path, state, args.read_hint, args.idle_exit_ms / 1000, args.poll_ms / 1000),
            batcher(state, pool, parse, args.batch_ms / 1000),
        )
    ended = time.perf_counter()
    busy = (state.last_parsed or ended) - started
    total = state.total
    statuses = {s: 0 for s in STATUSES + ("other",)}
    for (_, status), n in total.counts.items():
        statuses[status] += n
    return {
        "design": "asyncio readlines + snapshot-and-clear + ThreadPoolExecutor(2)",
        "parse": args.parse,
        "read_hint": args.read_hint,
        "lines": total.lines,
        "bytes": state.bytes,
        "seconds": round(busy, 3),
        "wall_seconds": round(ended - started, 3),
        "lines_per_s": round(total.lines / busy) if busy > 0 else 0,
        "mb_per_s": round(state.bytes / busy / 1e6, 1) if busy > 0 else 0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "max_list_len": state.max_list_len,
        # Without the newlines, as order_stats reports it.
        "line_bytes": total.line_bytes - total.lines if args.parse == "none" else None,
        "batches": state.batches,
        "orders": total.orders,
        "other_lines": total.other_lines,
        "parse_errors": total.parse_errors,
        "coins": len({coin for coin, _ in total.counts}) if args.parse == "json" else None,
        "statuses": statuses if args.parse == "json" else None,
        "filled_notional": round(sum(total.notional.values()), 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--parse", choices=("none", "json"), default="json")
    parser.add_argument("--read-hint", type=int, default=256 * 1024,
                        help="readlines() size hint in bytes; 0: bare readlines()")
    parser.add_argument("--batch-ms", type=float, default=50)
    parser.add_argument("--idle-exit-ms", type=float, default=200)
    parser.add_argument("--poll-ms", type=float, default=50,
                        help="sleep at end of file before reading again")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    sys.exit(main())
