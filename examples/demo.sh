#!/usr/bin/env bash
# The README's first command ends here: a writer appends to a log and rotates it while
# snaptail-follow follows the path; batches are described on stderr as they arrive.
set -euo pipefail
follow=${1:?usage: demo.sh PATH-TO-snaptail-follow}
dir=$(mktemp -d "${TMPDIR:-/tmp}/snaptail-demo.XXXXXX")
trap 'rm -rf "$dir"' EXIT
log=$dir/orders.log

echo "== snaptail demo: following $log"
echo "== a writer appends 3 bursts of orders; the log is rotated (mv + create) after the second"
"$follow" --show-batches --linger-ms 50 --rotate-wait-ms 200 --idle-exit-ms 1500 --stats \
    "$log" >"$dir/out.txt" 2>"$dir/err.txt" &
pid=$!

write_burst() {  # burst first last
    for ((i = $2; i <= $3; i++)); do
        printf 'seq=%d coin=BTC side=%s px=%d\n' "$i" $((i % 2 ? 1 : 0)) $((97000 + i)) >>"$log"
    done
}
sleep 0.3  # the log does not exist yet: snaptail waits for it to appear
write_burst 1 1 400
sleep 0.3
write_burst 2 401 900
mv "$log" "$log.1"
write_burst 3 901 1200
wait "$pid"

echo "== batches as they arrived (stderr):"
grep '^batch' "$dir/err.txt" || true
echo "== first and last lines printed (stdout):"
head -n 2 "$dir/out.txt"
echo "..."
tail -n 2 "$dir/out.txt"
echo "== final stats:"
grep '^{' "$dir/err.txt"
got=$(wc -l <"$dir/out.txt")
if diff -q <(seq 1 1200) <(sed 's/^seq=\([0-9]*\).*/\1/' "$dir/out.txt") >/dev/null; then
    echo "== all $got lines arrived exactly once and in order, across the rotation"
else
    echo "== MISMATCH: $got lines printed; the sequence 1..1200 did not arrive intact" >&2
    exit 1
fi
