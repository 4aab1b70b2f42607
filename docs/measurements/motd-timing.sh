#!/bin/bash
# Times `gpures motd` against a daemon run by hand: 3 unread, none, daemon
# down. Run as root from the repository root after `cargo build`:
#   B=target/debug bash docs/measurements/motd-timing.sh   (or target/release)
set -euo pipefail
B=$(realpath "${B:-target/release}")
D=$(mktemp -d /tmp/motd.XXXX); chmod 755 "$D"
$B/gpures-daemon serve --socket "$D/g.sock" --state-dir "$D/state" > "$D/log" 2>&1 &
DP=$!
trap 'kill $DP 2>/dev/null; wait $DP 2>/dev/null; rm -rf "$D"' EXIT
for i in $(seq 100); do [ -S "$D/g.sock" ] && break; sleep 0.2; done
export GPURES_SOCKET="$D/g.sock" XDG_CONFIG_HOME="$D/cfg"
$B/gpures register --email motd@lab.kr --name "Motd" >/dev/null
for i in 1 2 3; do $B/gpures notify --test >/dev/null; done
sleep 0.5
$B/gpures motd
t() { local s e; for i in $(seq 50); do s=$(date +%s%N); $B/gpures motd >/dev/null; e=$(date +%s%N); echo $(( (e-s)/1000 )); done | sort -n | awk '{a[NR]=$1} END {printf "p50 %.1f ms  p90 %.1f ms  max %.1f ms (n=%d)\n", a[int(NR*0.5)]/1000, a[int(NR*0.9)]/1000, a[NR]/1000, NR}'; }
echo "3 unread:"; t
$B/gpures notifications >/dev/null
echo "none unread (prints nothing):"; out=$($B/gpures motd); [ -z "$out" ] && echo "  (silent)"; t
kill $DP; wait $DP 2>/dev/null || true
echo "daemon down:"; t
