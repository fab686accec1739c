#!/usr/bin/env bash
# A/B of offline queues' memory and publish rate between midge builds (or jemalloc settings):
# `midge bench offline --no-drain` (K persistent sessions away, M QoS 1 messages queued for each)
# against each variant in turn, ROUNDS times, a fresh broker and store (`sync = "always"`) per
# run. Prints one line per run: variant, publish seconds, bytes per queued delivery, RSS with
# the sessions away and with their queues loaded, and the peak RSS sampled every 0.5 s.
#
#   bench/offline_ab.sh /tmp/midge-before target/release/midge
#   bench/offline_ab.sh 'target/release/midge' 'target/release/midge@background_thread:false'
#   K=2000 M=500 ROUNDS=3 bench/offline_ab.sh ...
#
# A variant is a midge binary, optionally with `@` and a jemalloc `_RJEM_MALLOC_CONF` value.
# The load generator is target/release/midge (built if missing). Every broker it starts is
# stopped by its PID when done and on any exit; only loopback is used.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

K=${K:-10000}
M=${M:-1000}
ROUNDS=${ROUNDS:-2}
(($# > 0)) || { echo "usage: $0 MIDGE[@MALLOC_CONF]..." >&2; exit 2; }

WORK=$(mktemp -d /tmp/midge-offline-ab.XXXXXX)
trap stop_all EXIT
trap 'exit 130' INT TERM
[[ -x $MIDGE ]] || { log "building midge (release)"; (cd "$ROOT" && cargo build --release -p midge --quiet); }

for ((round = 1; round <= ROUNDS; round++)); do
    for variant in "$@"; do
        binary=${variant%%@*}
        conf=''
        [[ $variant == *@* ]] && conf=${variant#*@}
        dir=$WORK/run-$round-$(echo "$variant" | tr -c 'a-zA-Z0-9' _)
        mkdir -p "$dir"
        free_port BROKER_PORT
        printf '[[listener]]\nbind = "127.0.0.1:%s"\nallow_anonymous = true\n[log]\nlevel = "warn"\n[store]\ndata_dir = "data"\nsync = "always"\n' \
            "$BROKER_PORT" >"$dir/midge.toml"
        if [[ -n $conf ]]; then
            (cd "$dir" && _RJEM_MALLOC_CONF=$conf exec "$binary" serve -c midge.toml) >"$dir/broker.log" 2>&1 &
        else
            (cd "$dir" && exec "$binary" serve -c midge.toml) >"$dir/broker.log" 2>&1 &
        fi
        BROKER_PID=$!
        STARTED_PIDS+=("$BROKER_PID")
        wait_port "$BROKER_PORT" "$BROKER_PID" || { log "$variant did not start: $(tail -1 "$dir/broker.log")"; continue; }
        (while kill -0 "$BROKER_PID" 2>/dev/null; do
            awk '/VmRSS/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || true
            sleep 0.5
        done >"$dir/rss") &
        STARTED_PIDS+=("$!")
        "$MIDGE" bench offline -p "$BROKER_PORT" --subscribers "$K" --messages "$M" --no-drain \
            --broker-pid "$BROKER_PID" --json --quiet >"$dir/result.json" 2>"$dir/result.err" ||
            log "  failed: $(tail -1 "$dir/result.err")"
        stop_pid "$BROKER_PID"
        peak=$(sort -n "$dir/rss" | tail -1)
        python3 - "$dir/result.json" "$variant" "$peak" <<'EOF'
import json, sys
path, variant, peak = sys.argv[1:4]
try:
    r = json.load(open(path))
except (OSError, ValueError):
    print(f"{variant}: no result")
    sys.exit(0)
print(f"{variant}: publish {r['publish_s']:.2f} s, {r['bytes_per_queued_delivery']} B per queued delivery, "
      f"RSS away {r['rss_baseline_kib'] / 1024:.1f} MiB, loaded {r['rss_loaded_kib'] / 1024:.1f} MiB, "
      f"peak {int(peak) / 1024:.0f} MiB, acked {r['acked_total']} of {r['sent_total']}")
EOF
    done
done
