#!/usr/bin/env bash
# Runs every tlstap benchmark against one binary and appends a dated section to bench/RESULTS.md.
#   sudo bench/run-all.sh /abs/path/to/tlstap        (what `sudo make bench` runs)
# Needs root, nginx, wrk, iperf3, tcpdump, zstd, tshark, curl, openssl. All traffic stays inside
# namespaces named bn-* that the benchmarks create (198.18.0.0/15); every namespace and process they
# start is removed on exit, failure or Ctrl-C. Takes about 6–7 minutes.
# Environment knobs (defaults in each script): BENCH_ROUNDS, BENCH_SECONDS, BENCH_RATES,
# BENCH_IPERF_SECONDS, BENCH_NAMESPACES, BENCH_ONLY="https_cost capture_ceiling" (a subset),
# BENCH_NO_RESULTS=1 (print the section instead of appending it).
set -uo pipefail

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 /abs/path/to/tlstap" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "$0: needs root (namespaces, tc, BPF)" >&2
    exit 2
fi
for tool in nginx wrk iperf3 tcpdump zstd tshark curl openssl python3 gzip tc; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install it)" >&2; exit 2; }
done

here=$(cd "$(dirname "$0")" && pwd)
# A private copy, so a rebuild of the original does not swap the binary in the middle of a run.
binary=/tmp/bench-tlstap
cp "$1" "$binary.new" && mv "$binary.new" "$binary"
results=$(mktemp -d /tmp/bn-results-XXXXXX)
echo "- tlstap: \`$1\` built $(date -u -r "$1" '+%Y-%m-%d %H:%M:%S UTC'), version $("$binary" --version), $(( $(stat -c %s "$binary") / 1048576 )) MiB, sha256 $(sha256sum "$binary" | cut -c1-16)…" > "$results/binary"
child=""

cleanup() {
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    # Safety net: the scripts remove their namespaces themselves; these names are only ever ours.
    for ns in $(ip netns list | awk '{print $1}' | grep -E '^bn-(h|s|c|f|d)-'); do
        ip netns del "$ns" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

benchmarks=${BENCH_ONLY:-"https_cost handshake_storm capture_ceiling footprint discovery_scale"}
declare -A limit=([https_cost]=300 [handshake_storm]=300 [capture_ceiling]=400 [footprint]=200 [discovery_scale]=300)
failures=""
start=$(date +%s)
echo "tlstap bench: $1 (copied to $binary), results in $results"
for name in $benchmarks; do
    echo "== $name ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$name: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$results/loadavg"
    timeout --signal=TERM --kill-after=30 "${limit[$name]:-300}" \
        python3 "$here/$name.py" "$binary" "$results/$name.json" > "$results/$name.out" 2> "$results/$name.log" &
    child=$!
    wait "$child"
    rc=$?
    child=""
    grep -v '^ \|^[{}]' "$results/$name.log" | sed 's/^/   /'
    if [ $rc -ne 0 ]; then
        echo "   $name FAILED (exit $rc); last lines of its log:"
        tail -n 15 "$results/$name.log" | sed 's/^/   | /'
        failures="$failures $name"
    fi
done
echo "${failures# }" > "$results/failures"
echo "== all done in $(( $(date +%s) - start )) s"

section=$(python3 "$here/report.py" "$results" "$binary")
if [ -n "${BENCH_NO_RESULTS:-}" ]; then
    echo "$section"
else
    { echo; echo "$section"; } >> "$here/RESULTS.md"
    echo "appended to $here/RESULTS.md"
fi
[ -z "$failures" ]
