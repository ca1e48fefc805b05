#!/usr/bin/env bash
# Overhead of `kiln agent` at default settings: CPU (user+system of the agent process, plus
# the kernel time of its eBPF programs) and RSS, first on a quiet host, then under a churn
# of short-lived processes (default 500/s, each burning 1 ms of CPU and exiting).
#
#   sudo profiler-daemon/benches/agent_overhead.sh [STEADY_SECS] [CHURN_SECS] [PER_SEC]
#
# Env: KILN_BIN (default target/release/kiln). Needs root, gcc. Everything it starts is
# killed by pid at the end; temporary files live in a mktemp directory that is removed.
set -euo pipefail

STEADY=${1:-120}
CHURN=${2:-120}
RATE=${3:-500}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KILN=${KILN_BIN:-$ROOT/target/release/kiln}
[ -x "$KILN" ] || { echo "no $KILN: run cargo build --release -p profiler-daemon" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

TMP=$(mktemp -d /tmp/kiln-bench.XXXXXX)
AGENT=""
CHURNER=""
cleanup() {
    [ -n "$CHURNER" ] && kill "$CHURNER" 2>/dev/null || true
    [ -n "$AGENT" ] && { kill -INT "$AGENT" 2>/dev/null; sleep 2; kill -KILL "$AGENT" 2>/dev/null; } || true
    rm -rf "$TMP"
}
trap cleanup EXIT

gcc -O0 -g -fno-omit-frame-pointer -o "$TMP/agent_burn" "$ROOT/tests/workloads/agent_burn.c"
PREV_BPF_STATS=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
trap 'sysctl -qw kernel.bpf_stats_enabled=$PREV_BPF_STATS; cleanup' EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$KILN" agent --output-dir "$TMP/out" --metrics-listen "127.0.0.1:$PORT" 2>"$TMP/agent.log" &
AGENT=$!
TICK=$(getconf CLK_TCK)
PAGE=$(getconf PAGESIZE)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
rss_kb() { awk -v p="$PAGE" '{print $24 * p / 1024}' "/proc/$AGENT/stat"; }
# Anonymous (heap) vs file-backed (mapped binaries and debug info, reclaimable) resident KiB.
rss_split() { awk '/^RssAnon:/{a=$2} /^RssFile:/{f=$2} END{printf "anon %.1f MiB, file %.1f MiB", a/1024, f/1024}' "/proc/$AGENT/status"; }
# Sum of run_time_ns over the agent's eBPF program fds (needs kernel.bpf_stats_enabled=1).
bpf_ns() {
    local total=0 f v
    for f in /proc/$AGENT/fdinfo/*; do
        v=$(awk '/^prog_type:/{p=1} /^run_time_ns:/{r=$2} END{if(p) printf "%.0f\n", r}' "$f" 2>/dev/null || true)
        [ -n "$v" ] && total=$((total + v))
    done
    echo "$total"
}

measure() { # name seconds
    local name=$1 secs=$2 c0 c1 b0 b1 rmin=999999999 rmax=0 r i
    c0=$(cpu_ticks); b0=$(bpf_ns)
    echo -n "$name" >>"$TMP/rss_series"
    for ((i = 0; i < secs; i += 5)); do
        sleep 5
        r=$(rss_kb)
        r=${r%.*}
        ((r < rmin)) && rmin=$r
        ((r > rmax)) && rmax=$r
        # One point a minute, to show whether RSS grows over the phase.
        (((i + 5) % 60 == 0)) && printf ' %dm:%.1f' $(((i + 5) / 60)) "$(awk -v r="$r" 'BEGIN{print r/1024}')" >>"$TMP/rss_series"
    done
    echo >>"$TMP/rss_series"
    c1=$(cpu_ticks); b1=$(bpf_ns)
    awk -v n="$name" -v s="$secs" -v c="$((c1 - c0))" -v t="$TICK" -v b="$((b1 - b0))" \
        -v lo="$rmin" -v hi="$rmax" -v sp="$(rss_split)" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
        user = c / t / s * 100; bpf = b / 1e9 / s * 100;
        printf "| %s | %d s | %.3f%% | %.3f%% | %.3f%% | %.1f / %.1f MiB (end: %s) | %s |\n", n, s, user, bpf, user + bpf, lo / 1024, hi / 1024, sp, load }'
}

sleep 20 # warm-up: caches, first windows
echo "| phase | duration | agent CPU (user+sys) | eBPF programs | total | RSS min / max | host load (1/5/15 min) |"
echo "|---|---|---|---|---|---|---|"
measure "steady (idle host)" "$STEADY"
"$TMP/agent_burn" churn "$RATE" "$CHURN" 1 >"$TMP/churn.out" &
CHURNER=$!
sleep 5
measure "churn ${RATE}/s" "$((CHURN - 10))"
wait "$CHURNER" || true
CHURNER=""
echo
echo "RSS (MiB) at each minute of each phase:"
cat "$TMP/rss_series"
echo "churn processes started: $(cat "$TMP/churn.out")"
curl -s "127.0.0.1:$PORT/metrics" | grep -E '^kiln_(samples_(recorded|unlabeled|relabel_dropped|exported)_total|samples_lost_total|windows_(collected|dropped)_total|targets_cached|processes_tracked|symbolizer_cache_hit_ratio|exporter_windows_dropped_total)' | grep -v ' 0$' || true
