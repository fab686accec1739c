#!/usr/bin/env bash
# Persistent QoS 1 fan-in (10 publishers -> 1 persistent subscriber, connected) on Midge with
# `[store] sync = "always"` and `sync = { interval_ms = 1000 }`, against mosquitto with
# `persistence true`, in alternation over a few rounds of one run; then the size of Midge's
# store during a steady run, to show it stays flat. Rewrites the "persistence" section of
# docs/benchmarks.md.
#
#   bench/persistence.sh
#   ROUNDS=1 DURATION=3 STEADY=20 bench/persistence.sh   a quick look
#   MIDGE_BASE=/tmp/midge-before CONFIG_NAMES="midge-always midge-base-always" STEADY=0 UPDATE_DOC=0 \
#     bench/persistence.sh                                an A/B run of a change against the build before it
#
# Every broker and bench it starts is stopped by its PID when done and on any exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
STEADY=${STEADY:-60}
VERSION=${VERSION:-311}
UPDATE_DOC=${UPDATE_DOC:-1}
LOAD=(fanin --publishers 10 --subscribers 1 -q 1 --persistent -V "$VERSION")

WORK=$(mktemp -d /tmp/midge-persistence.XXXXXX)
trap stop_all EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
install_peers
mkdir -p "$WORK/results"
describe_machine >"$WORK/machine.md"

# name|broker|midge [store] table or mosquitto settings (DIR is the run's directory).
CONFIGS=(
    $'midge-always|midge|[store]\ndata_dir = "data"\nsync = "always"'
    $'midge-interval|midge|[store]\ndata_dir = "data"\nsync = { interval_ms = 1000 }'
    $'mosquitto|mosquitto|persistence true\npersistence_location DIR/\nautosave_interval 1800'
    $'midge-base-always|midge-base|[store]\ndata_dir = "data"\nsync = "always"'
)
CONFIG_NAMES=${CONFIG_NAMES:-midge-always midge-interval mosquitto}

start_config() { # name dir
    local entry
    for entry in "${CONFIGS[@]}"; do
        IFS='|' read -r name broker settings <<<"${entry%%$'\n'*}"
        [[ $name == "$1" ]] || continue
        settings=${entry#*|*|}
        if [[ $broker == midge* ]]; then
            start_broker "$broker" "$2" "$settings"
        else
            # mosquitto's persistence settings replace the `persistence false` of the base config.
            start_broker mosquitto "$2" "" "${settings//DIR/$2}"
        fi
        return
    done
    return 1
}

for ((round = 1; round <= ROUNDS; round++)); do
    for name in $CONFIG_NAMES; do
        dir=$WORK/$name-$round
        start_config "$name" "$dir" || continue
        out=$WORK/results/$name.$round.json
        log "round $round/$ROUNDS: persistent QoS 1 fan-in on $name"
        run_bench "${LOAD[@]}" -p "$BROKER_PORT" --broker-pid "$BROKER_PID" --warmup "$WARMUP" -d "$DURATION" \
            --json --quiet >"$out" 2>"$out.err" || log "  failed: $(tail -1 "$out.err")"
        stop_pid "$BROKER_PID"
    done
done

# Store size in a steady run: the same load for STEADY seconds, `du -sb` of the data directory
# every 10 s while it runs, and once more after the subscriber's session is removed.
: >"$WORK/sizes"
if ((STEADY > 0)); then
    dir=$WORK/steady
    start_config midge-always "$dir"
    log "steady run: $STEADY s on midge-always, store size every 10 s"
    "$MIDGE" bench "${LOAD[@]}" -p "$BROKER_PORT" --broker-pid "$BROKER_PID" --warmup 0 -d "$STEADY" --json --quiet \
        >"$WORK/steady.json" 2>"$WORK/steady.err" &
    bench_pid=$!
    STARTED_PIDS+=("$bench_pid")
    begin=$(date +%s)
    : >"$WORK/sizes"
    for ((t = 10; t <= STEADY; t += 10)); do
        sleep $((begin + t - $(date +%s)))
        kill -0 "$bench_pid" 2>/dev/null || break
        echo "$t $(du -sb "$dir/data" 2>/dev/null | cut -f1)" >>"$WORK/sizes"
    done
    wait "$bench_pid" || log "steady run failed: $(tail -1 "$WORK/steady.err")"
    stop_pid "$bench_pid"
    echo "after $(du -sb "$dir/data" 2>/dev/null | cut -f1)" >>"$WORK/sizes"
    stop_pid "$BROKER_PID"
fi
elapsed=$(($(date +%s) - started))

python3 - "$WORK" "$ROUNDS" "$DURATION" "$WARMUP" "$STEADY" "$elapsed" "$VERSION" >"$WORK/section.md" <<'EOF'
import glob, json, os, statistics, sys

work, rounds, duration, warmup, steady, elapsed, version = sys.argv[1:8]
labels = {
    "midge-always": 'Midge, `sync = "always"`',
    "midge-interval": "Midge, `sync = { interval_ms = 1000 }`",
    "mosquitto": "mosquitto, `persistence true`",
    "midge-base-always": 'Midge before (`MIDGE_BASE`), `sync = "always"`',
}
results = {}
for path in glob.glob(os.path.join(work, "results", "*.json")):
    name = os.path.basename(path).rsplit(".", 2)[0]
    try:
        with open(path) as file:
            results.setdefault(name, []).append(json.load(file))
    except (ValueError, OSError):
        pass

def median(name, get):
    values = [v for v in (get(r) for r in results.get(name, [])) if v is not None]
    return statistics.median(values) if values else None

def per_cpu(r):
    return r["delivered"] / r["broker_cpu_s"] if r.get("broker_cpu_s") else None

def rate(value):
    return "–" if value is None else f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:,.0f}"

base = {key: median("mosquitto", get) for key, get in
        [("acked", lambda r: r["sent_per_s"]), ("delivered", lambda r: r["delivered_per_s"]), ("cpu", per_cpu)]}
print(f"Persistent QoS 1 fan-in: 10 publishers → 1 subscriber with a persistent session (MQTT "
      f"{'5, Session Expiry 3600 s' if version == '5' else '3.1.1, Clean Session 0'}), connected throughout; 64-byte "
      f"payloads, 100 messages in flight per publisher. Medians of {rounds} round(s) of {warmup} s warm-up + "
      f"{duration} s measured, the three configurations in turn, a fresh broker and store per run. Ratios are "
      f"to mosquitto in the same run. The whole script took {int(elapsed) // 60} min {int(elapsed) % 60} s.")
print()
with open(os.path.join(work, "machine.md")) as file:
    print(file.read().rstrip())
print()
print("| broker | acknowledged msg/s | delivered msg/s | delivered per broker CPU-s | lost (median / worst) "
      "| broker CPU s | acked ratio | delivered ratio |")
print("|---|---|---|---|---|---|---|---|")
for name, label in labels.items():
    reports = results.get(name, [])
    acked = median(name, lambda r: r["sent_per_s"])
    delivered = median(name, lambda r: r["delivered_per_s"])
    cpu = median(name, lambda r: r.get("broker_cpu_s"))
    lost = [r["lost"] for r in reports]
    lost_text = f"{statistics.median(lost):,.0f} / {max(lost):,}" if lost else "–"
    ratio = lambda ours, theirs: f"{ours / theirs:.2f}" if ours is not None and theirs else "–"
    print(f"| {label} | {rate(acked)} | {rate(delivered)} | {rate(median(name, per_cpu))} | {lost_text} | "
          f"{'–' if cpu is None else f'{cpu:.2f}'} | {ratio(acked, base['acked'])} | {ratio(delivered, base['delivered'])} |")
print()
sizes = []
with open(os.path.join(work, "sizes")) as file:
    sizes = [line.split() for line in file if line.strip()]
if not sizes:
    sys.exit(0)  # no steady run (STEADY=0)
steady_report = {}
try:
    with open(os.path.join(work, "steady.json")) as file:
        steady_report = json.load(file)
except (ValueError, OSError):
    pass
print(f"Store size (`du -sb` of the data directory) during a steady {steady} s run of the same load on "
      f"Midge with `sync = \"always\"`"
      + (f" ({rate(steady_report.get('delivered_per_s'))} msg/s delivered, "
         f"{steady_report.get('delivered_total', 0):,} messages in all, {steady_report.get('lost', 0):,} lost)"
         if steady_report else "") + ":")
print()
print("| " + " | ".join(("after the run" if t == "after" else f"{t} s") for t, _ in sizes) + " |")
print("|" + "---|" * len(sizes))
print("| " + " | ".join(f"{int(size) / 1024 / 1024:.2f} MiB" for _, size in sizes) + " |")
EOF

cat "$WORK/section.md"
if [[ $UPDATE_DOC == 1 ]]; then
    replace_section persistence "$WORK/section.md"
    log "docs/benchmarks.md updated"
fi
