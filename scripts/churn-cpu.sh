#!/usr/bin/env bash
# The CPU each thread of a server uses under the demo's churn, with no queries and persistence
# off: starts BINARY on a demo of OBJECTS objects changing at RATE changes per second, waits
# until it is ready and 10 s more, then reads every thread's user + system time
# (/proc/PID/task/TID/stat) and the machine's busy time (/proc/stat) over SECONDS, and the
# graph's generations per second (/metrics), then stops the server by its PID.
#
#   scripts/churn-cpu.sh target/release/astrolabe [OBJECTS=1000000] [RATE=20000] [SECONDS=20]
set -euo pipefail
bin=${1:?usage: churn-cpu.sh BINARY [OBJECTS] [RATE] [SECONDS]}
objects=${2:-1000000}
rate=${3:-20000}
seconds=${4:-20}
log=$(mktemp)
# Port 0: the kernel picks a free one, and the server logs the address it listens on.
"$bin" serve --source "demo:$objects" --demo-churn "$rate" --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
until addr=$(grep -o -m1 'listening on 127\.0\.0\.1:[0-9]*' "$log"); do
  kill -0 "$pid" || { cat "$log"; exit 1; }
  sleep 0.2
done
addr=${addr#listening on }
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$addr/readyz")" = 200 ]; do
  kill -0 "$pid" || { cat "$log"; exit 1; }
  sleep 1
done
sleep 10
threads() { for t in /proc/"$pid"/task/*; do echo "$(basename "$t") $(cut -d' ' -f2,14,15 "$t/stat" | tr -d '()')"; done | sort; }
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
generation() { curl -s "$addr/metrics" | awk '/^astrolabe_graph_generation /{print $2}'; }
t1=$(threads); b1=$(busy); g1=$(generation)
sleep "$seconds"
t2=$(threads); b2=$(busy); g2=$(generation)
hz=$(getconf CLK_TCK)
echo "changes applied: $(( (g2 - g1) / seconds ))/s"
join <(echo "$t1") <(echo "$t2") | awk -v s="$seconds" -v hz="$hz" \
  '{cpu = ($6 + $7 - $3 - $4) / hz / s * 100; if (cpu >= 0.5) printf "%-16s %5.1f %% of a core\n", $2, cpu}'
echo "machine busy:    $(( (b2 - b1) * 100 / hz / seconds )) % of a core ($(nproc) cores)"
