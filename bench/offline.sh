#!/usr/bin/env bash
# Offline queues: what a message queued for an offline persistent session costs the broker in
# memory, and how fast the queues are read back when their clients return (`midge bench
# offline`), on Midge with a store (`[store] sync = "always"`, queues on disk) and on mosquitto
# (persistence off, queues in memory); then one long queue read back on Midge while a canary
# pair at a fixed rate measures the latency of other traffic (`midge bench drain`). Rewrites the
# "offline" section of docs/benchmarks.md.
#
# Last, the store's size over a steady run (STEADY seconds, default 600): rounds of
# `offline` with STEADY_SESSIONS sessions x STEADY_MESSAGES messages (1,000 x 1,000 by default)
# queued, read back and their sessions removed, one after another on one broker, with the
# store's size (`du -sb` of its directory) every 10 s: it must stay flat.
#
#   bench/offline.sh
#   SESSIONS=200 MESSAGES=100 DRAIN_MESSAGES=5000 STEADY=30 UPDATE_DOC=0 bench/offline.sh   a quick look
#
# Every broker and bench it starts is stopped by its PID when done and on any exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SESSIONS=${SESSIONS:-10000}
MESSAGES=${MESSAGES:-1000}
DRAIN_MESSAGES=${DRAIN_MESSAGES:-100000}
# Sessions reading their queues back at once (`--wave`), and the canary's rate.
WAVE=${WAVE:-500}
RATE=${RATE:-1000}
STEADY=${STEADY:-600}
STEADY_SESSIONS=${STEADY_SESSIONS:-1000}
STEADY_MESSAGES=${STEADY_MESSAGES:-1000}
VERSION=${VERSION:-311}
UPDATE_DOC=${UPDATE_DOC:-1}
# Only mosquitto is compared here (install_peers installs what BROKERS names).
BROKERS=mosquitto

# Midge's default [store] (persistence on, sync "always"), in the run's directory. Midge keeps
# 100,000 messages per offline session by default ([mqtt] max_offline_messages): a longer
# drain raises it so that nothing is dropped for the bound.
MIDGE_STORE=$'[store]\ndata_dir = "data"\nsync = "always"'
if ((DRAIN_MESSAGES > 100000 || MESSAGES > 100000)); then
    bound=$((DRAIN_MESSAGES > MESSAGES ? DRAIN_MESSAGES : MESSAGES))
    MIDGE_STORE+=$'\n\n[mqtt]\nmax_offline_messages = '$bound$'\nmax_offline_bytes = 0'
fi
# mosquitto keeps 1,000 messages per offline session by default (max_queued_messages), so the
# default 1,000 fit; more need the bound raised.
MOSQUITTO_EXTRA=''
if ((MESSAGES > 1000)); then
    MOSQUITTO_EXTRA="max_queued_messages $MESSAGES"
fi

WORK=$(mktemp -d /tmp/midge-offline.XXXXXX)
trap stop_all EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
install_peers
mkdir -p "$WORK/results"
describe_machine | grep -v '^- Peers' >"$WORK/machine.md"
echo "- Peer: $(mosquitto -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//')" >>"$WORK/machine.md"

OFFLINE=(offline --subscribers "$SESSIONS" --messages "$MESSAGES" --wave "$WAVE" -V "$VERSION")

# run_offline NAME: `midge bench offline` on the broker just started, into results/NAME.json.
run_offline() {
    local out=$WORK/results/$1.json
    log "offline: $SESSIONS sessions x $MESSAGES messages on $1"
    run_bench "${OFFLINE[@]}" -p "$BROKER_PORT" --broker-pid "$BROKER_PID" --json --quiet >"$out" 2>"$out.err" ||
        log "  failed: $(tail -1 "$out.err")"
    stop_pid "$BROKER_PID"
}

start_broker midge "$WORK/midge-offline" "$MIDGE_STORE"
run_offline midge
start_broker mosquitto "$WORK/mosquitto-offline" "" "$MOSQUITTO_EXTRA"
run_offline mosquitto

start_broker midge "$WORK/midge-drain" "$MIDGE_STORE"
log "drain: $DRAIN_MESSAGES messages read back on midge, canary at $RATE msg/s"
out=$WORK/results/drain.json
run_bench drain --messages "$DRAIN_MESSAGES" --rate "$RATE" -V "$VERSION" -p "$BROKER_PORT" \
    --broker-pid "$BROKER_PID" --json --quiet >"$out" 2>"$out.err" || log "  failed: $(tail -1 "$out.err")"
stop_pid "$BROKER_PID"

# The store's size while offline queues fill and drain, round after round, for STEADY seconds.
dir=$WORK/midge-steady
start_broker midge "$dir" "$MIDGE_STORE"
log "steady: $STEADY s of offline rounds ($STEADY_SESSIONS x $STEADY_MESSAGES), store size every 10 s"
: >"$WORK/sizes"
: >"$WORK/steady-rounds"
(
    end=$(($(date +%s) + STEADY))
    round=0
    while (($(date +%s) < end)); do
        round=$((round + 1))
        "$MIDGE" bench offline -p "$BROKER_PORT" --subscribers "$STEADY_SESSIONS" --messages "$STEADY_MESSAGES" \
            --wave "$WAVE" -V "$VERSION" --json --quiet >"$WORK/steady-$round.json" 2>"$WORK/steady-$round.err" || true
        python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(r["sent_total"], r["expected_total"], r["delivered_total"], r["lost"], r["duplicates"])' \
            "$WORK/steady-$round.json" >>"$WORK/steady-rounds" 2>/dev/null || echo "failed" >>"$WORK/steady-rounds"
    done
) &
steady_pid=$!
STARTED_PIDS+=("$steady_pid")
begin=$(date +%s)
for ((t = 10; t <= STEADY; t += 10)); do
    sleep $((begin + t - $(date +%s) > 0 ? begin + t - $(date +%s) : 0))
    echo "$t $(du -sb "$dir/data" 2>/dev/null | cut -f1)" >>"$WORK/sizes"
done
wait "$steady_pid" || true
echo "after $(du -sb "$dir/data" 2>/dev/null | cut -f1)" >>"$WORK/sizes"
stop_pid "$BROKER_PID"
elapsed=$(($(date +%s) - started))

python3 - "$WORK" "$elapsed" "$VERSION" "$WAVE" "$MOSQUITTO_EXTRA" "$STEADY_SESSIONS" "$STEADY_MESSAGES" \
    >"$WORK/section.md" <<'EOF'
import json, os, sys

work, elapsed, version, wave, mosquitto_extra, steady_sessions, steady_messages = sys.argv[1:8]
steady_desc = f"{int(steady_sessions):,} sessions x {int(steady_messages):,} messages"
elapsed = int(elapsed)

def load(name):
    try:
        with open(os.path.join(work, "results", name + ".json")) as file:
            return json.load(file)
    except (ValueError, OSError):
        return None

def num(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"

def rate(value):
    return "–" if value is None else f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:,.0f}"

def mib(kib):
    return "–" if kib is None else f"{kib / 1024:,.1f} MiB"

session = "5, Clean Start 0 and a Session Expiry of a day" if version == "5" else "3.1.1, Clean Session 0"
midge, mosquitto, drain = load("midge"), load("mosquitto"), load("drain")
first = midge or mosquitto or {}
print(f"Offline queues: {num(first.get('sessions'))} persistent subscribers (MQTT {session}) each subscribe to "
      f"one topic at QoS 1 and disconnect; one publisher then sends {num(first.get('messages'))} QoS 1 messages "
      f"of 64 bytes to it (100 in flight) and waits for every PUBACK, so each session has that many queued. "
      f"The broker's resident memory (VmRSS) is read once it has settled (12 s after the load, then two readings 1 s apart within 0.5 %) "
      f"with the sessions away and again with their queues; the difference over the deliveries queued is the "
      f"memory per queued delivery. Then every subscriber returns, {wave} at a time, and takes its queue. "
      f"Midge runs with its default store (`[store] sync = \"always\"`): an offline queue is on disk and costs "
      f"the session the message's id, about a byte delta-encoded (decision 0006), while its loaded reading also holds what the store "
      f"engine keeps in memory (write buffers, caches), bounded and not per message. mosquitto runs with "
      f"`persistence false` and keeps queues in memory; its `max_queued_messages` "
      + (f"is raised to fit them (`{mosquitto_extra}`)" if mosquitto_extra else
         f"(default 1,000) bounds each offline queue, and the {num(first.get('messages'))} messages fit")
      + f". A fresh broker per run; the whole script took {elapsed // 60} min {elapsed % 60} s "
      f"(`bench/offline.sh`).")
print()
with open(os.path.join(work, "machine.md")) as file:
    print(file.read().rstrip())
print()
print("| broker | deliveries queued | publish | RSS, sessions away | RSS, queues loaded | bytes per queued delivery "
      "| read back | deliveries/s | delivered | lost | duplicates |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for label, report in [('Midge, `sync = "always"`', midge), ("mosquitto, `persistence false`", mosquitto)]:
    if report is None:
        print(f"| {label} | failed | | | | | | | | | |")
        continue
    settled = "" if report.get("rss_settled") else " (not settled)"
    print(f"| {label} | {num(report['deliveries_queued'])} | {report['publish_s']:.2f} s | "
          f"{mib(report.get('rss_baseline_kib'))} | {mib(report.get('rss_loaded_kib'))} | "
          f"{num(report.get('bytes_per_queued_delivery'), 1)}{settled} | "
          f"{num(report.get('drain_s'), 2)} s | {rate(report.get('drain_per_s'))} | "
          f"{num(report.get('delivered_total'))} | {num(report.get('lost'))} | {num(report.get('duplicates'))} |")
print()
if drain is None:
    print("Drain: the run failed.")
    sys.exit(0)
print(f"Drain: one persistent subscriber with {num(drain['messages'])} QoS 1 messages queued (published in "
      f"{drain['publish_s']:.2f} s, {rate(drain.get('publish_per_s'))} msg/s, every PUBACK awaited) returns and "
      f"takes them all, on Midge with `sync = \"always\"`, while a canary pair on another topic (QoS 0, "
      f"{num(drain['canary_rate'])} msg/s, every message timed from its write to its read) runs beside it; its "
      f"latency {drain['canary_baseline_s']:.1f} s before the subscriber returns and while it reads, in µs.")
print()
print("| read back | msg/s | first message | delivered | lost | duplicates | out of order |")
print("|---|---|---|---|---|---|---|")
print(f"| {drain['drain_s']:.2f} s | {rate(drain.get('drain_per_s'))} | {num(drain.get('first_message_ms'), 1)} ms | "
      f"{num(drain['delivered_total'])} of {num(drain['expected_total'])} | {num(drain['lost'])} | "
      f"{num(drain['duplicates'])} | {num(drain['out_of_order'])} |")
print()
print("| canary | p50 | p90 | p99 | p99.9 | max | messages |")
print("|---|---|---|---|---|---|---|")
for label, key in [("before", "canary_baseline_us"), ("during the read back", "canary_drain_us")]:
    latency = drain.get(key)
    if latency is None:
        print(f"| {label} | – | – | – | – | – | 0 |")
    else:
        print(f"| {label} | {latency['p50']:,} | {latency['p90']:,} | {latency['p99']:,} | {latency['p99_9']:,} | "
              f"{latency['max']:,} | {latency['count']:,} |")
rounds = [line.split() for line in open(os.path.join(work, "steady-rounds")).read().splitlines()]
sizes = [line.split() for line in open(os.path.join(work, "sizes")).read().splitlines()]
done = [r for r in rounds if len(r) == 5]
if sizes:
    values = [int(v) for _, v in sizes]
    print()
    print(f"Store size over a steady run of {sizes[-2][0] if len(sizes) > 1 else '?'} s on Midge (`sync = \"always\"`): "
          f"rounds of {steady_desc} back to back on one broker, each round's sessions subscribing, going away, "
          f"getting their messages queued, returning to read them and being removed. {len(done)} rounds "
          f"completed ({len(rounds) - len(done)} failed or cut off at the end): "
          f"{num(sum(int(r[1]) for r in done))} deliveries queued, {num(sum(int(r[2]) for r in done))} delivered, "
          f"{num(sum(int(r[3]) for r in done))} lost, {num(sum(int(r[4]) for r in done))} duplicates. "
          f"`du -sb` of the store every 10 s, in MiB (min {min(values) / 2**20:.1f}, max {max(values) / 2**20:.1f}; "
          f"the last is after the run):")
    print()
    print(" ".join(f"{t}:{int(v) / 2**20:.0f}" for t, v in sizes))
errors = [(name, r) for name, r in [("offline on Midge", midge), ("offline on mosquitto", mosquitto),
                                    ("drain", drain)] if r and r.get("errors")]
if errors:
    print()
    for name, report in errors:
        print(f"- {name}: {report['errors']} errors, the first: {report.get('first_error')}")
EOF

cat "$WORK/section.md"
if [[ $UPDATE_DOC == 1 ]]; then
    # The first run adds the section, under a heading of its own, at the end of the file.
    if ! grep -qF '<!-- offline:begin -->' "$DOC"; then
        printf '\n## Offline queues: `bench/offline.sh`\n\n<!-- offline:begin -->\n<!-- offline:end -->\n' >>"$DOC"
    fi
    replace_section offline "$WORK/section.md"
    log "docs/benchmarks.md updated"
fi
