#!/usr/bin/env bash
# The least user CPU time of several runs of each QMP contender over the same
# input, the runs alternating between contenders: on a host shared with
# other jobs, steadier than a mean (a run can only be slowed down).
#
#   cargo build --profile bench -p vmwire-benches --example qmp_count
#   benches/min-time.sh burst 40000 7     # input, rounds, runs
#   benches/min-time.sh schema 2000 7
#   benches/min-time.sh /tmp/events.txt 400000 5   # a file of messages
set -euo pipefail
input=${1:-burst}; rounds=${2:-40000}; runs=${3:-7}
bin=$(dirname "$0")/../target/release/examples/qmp_count
contenders=(vmwire framer ignored value)
declare -A best
TIMEFORMAT=%U
for _ in $(seq "$runs"); do
    for c in "${contenders[@]}"; do
        t=$( { time "$bin" "$c" "$input" "$rounds" > /dev/null; } 2>&1 )
        best[$c]=$(awk -v t="$t" -v b="${best[$c]:-}" 'BEGIN { print (b == "" || t < b) ? t : b }')
    done
done
for c in "${contenders[@]}"; do
    awk -v c="$c" -v t="${best[$c]}" -v v="${best[vmwire]}" 'BEGIN { printf "%-8s %6.3f s  %5.2fx vmwire'"'"'s time\n", c, t, t / v }'
done
