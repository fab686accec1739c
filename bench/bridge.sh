#!/usr/bin/env bash
# Bridges through outages: Midge and mosquitto as the bridging broker, side by side, under the
# same schedule of outages. Per broker and QoS (1, then 2):
#
#   publisher ──▶ LOCAL (midge or mosquitto, the bridge) ──▶ tcp_proxy.py ──▶ REMOTE (midge) ──▶ subscriber
#
# LOCAL bridges `bench/# out QOS` to REMOTE through a TCP proxy this script controls
# (bench/tcp_proxy.py). REMOTE is a Midge with a store in every run, so that it is never the
# weak point; a subscriber there with a persistent session at the same QoS records every payload.
# The publisher (bench/bridge_clients.py, paho-mqtt) sends MESSAGES numbered messages (payload:
# the sequence number) at RATE msg/s with a persistent session, and records which LOCAL
# acknowledged. During the stream (D = MESSAGES / RATE seconds; the same schedule for both):
#
#   0.10 D – 0.30 D   proxy cut: every connection closed, new ones refused
#   0.35 D – 0.55 D   proxy stalled: nothing forwarded either way, the sockets kept
#   0.60 D – 0.70 D   LOCAL killed (kill -9), then restarted on the same data and port
#   0.80 D – 1.00 D   proxy cut again
#
# The publisher reconnects after the kill and sends again what was not acknowledged. Reports per
# broker and QoS: published, acknowledged by LOCAL, delivered at REMOTE, lost (acknowledged,
# never delivered), duplicates and out of order, and rewrites the "bridge" section of
# docs/benchmarks.md.
#
#   bench/bridge.sh                                   20,000 messages at 2,000 msg/s, QoS 1 and 2
#   MESSAGES=4000 RATE=1000 UPDATE_DOC=0 bench/bridge.sh   a quick look
#   BROKERS=midge QOS_LEVELS=2 bench/bridge.sh        one broker, one QoS
#   MIDGE=/path/to/midge bench/bridge.sh              another midge binary (default: the release
#                                                     build of this tree, built first)
#   KEEP_WORK=1 ...                                   keeps the work directory (logs, payloads)
#   TRACE=1 KEEP_WORK=1 ...                           every MQTT packet through the proxy (proxy.trace)
#                                                     and the publisher's (pub.trace), to follow a
#                                                     message that went missing
#   MOSQUITTO_LOG="all" ...                           LOCAL mosquitto's log types (default: error
#                                                     warning notice), in its broker.log
#
# LOCAL mosquitto runs with `persistence true`, `autosave_interval 1` and `max_queued_messages 0`
# (its best settings for this: a snapshot every second, no bound on the bridge's queue); LOCAL
# and REMOTE Midge with a store (`sync = "always"`). Installs what is missing (mosquitto from
# Debian, paho-mqtt from PyPI). Every process it starts is stopped by its PID when done and on
# any exit; every wait is bounded. Only loopback addresses are used.
set -euo pipefail
MIDGE_GIVEN=${MIDGE:-}
source "$(dirname "$0")/lib.sh"
[[ -n $MIDGE_GIVEN ]] && MIDGE=$MIDGE_GIVEN

MESSAGES=${MESSAGES:-20000}
RATE=${RATE:-2000}
QOS_LEVELS=${QOS_LEVELS:-1 2}
BROKERS=${BROKERS:-midge mosquitto}
UPDATE_DOC=${UPDATE_DOC:-1}
TRACE=${TRACE:-0}
# After the publisher is done: seconds without a new delivery before giving up on the rest,
# and the longest wait in all.
QUIET=${QUIET:-15}
DRAIN=${DRAIN:-120}
PY=python3
CLIENTS=$ROOT/bench/bridge_clients.py
PROXY=$ROOT/bench/tcp_proxy.py

# Midge's store, on LOCAL and REMOTE: persistence on, fsync at every commit (the default).
MIDGE_STORE=$'[store]\ndata_dir = "data"\nsync = "always"'

install_needed() {
    local tool
    for tool in python3 ss; do
        if ! command -v "$tool" >/dev/null; then
            log "$tool is needed (python3 runs the proxy, the clients and the summary; ss finds free ports)"
            exit 1
        fi
    done
    if [[ " $BROKERS " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null; then
        log "installing mosquitto"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    fi
    if ! $PY -c 'import paho.mqtt, sys; sys.exit(int(paho.mqtt.__version__.split(".")[0]) < 2)' 2>/dev/null; then
        log "installing paho-mqtt 2"
        $PY -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'paho-mqtt>=2,<3'
    fi
    if [[ -z $MIDGE_GIVEN ]]; then
        log "building midge (release)"
        (cd "$ROOT" && cargo build --release -p midge --quiet)
    fi
}

# wait_line FILE PATTERN PID SECONDS: waits until FILE has a line matching PATTERN, or PID dies,
# or SECONDS pass.
wait_line() {
    local file=$1 pattern=$2 pid=$3 i
    for ((i = 0; i < $4 * 20; i++)); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { grep -q "$pattern" "$file" 2>/dev/null && return 0; return 1; }
        sleep 0.05
    done
    return 1
}

# start_local NAME DIR: starts the bridging broker from DIR's config (written by config_local),
# on LOCAL_PORT; sets LOCAL_PID. Used for the first start and for the restart after the kill.
start_local() {
    local name=$1 dir=$2
    case $name in
    # 7>&-: the proxy's control FIFO stays open in this shell alone.
    midge) (cd "$dir" && exec "$MIDGE" serve -c midge.toml) >>"$dir/broker.log" 2>&1 7>&- & ;;
    mosquitto) mosquitto -c "$dir/mosquitto.conf" >>"$dir/broker.log" 2>&1 7>&- & ;;
    esac
    LOCAL_PID=$!
    STARTED_PIDS+=("$LOCAL_PID")
    if ! wait_port "$LOCAL_PORT" "$LOCAL_PID"; then
        log "$name (LOCAL) did not start; its log:"
        tail -20 "$dir/broker.log" >&2
        return 1
    fi
}

# config_local NAME DIR QOS: the bridging broker's config, bridging to PROXY_PORT.
config_local() {
    local name=$1 dir=$2 qos=$3
    mkdir -p "$dir"
    case $name in
    midge)
        cat >"$dir/midge.toml" <<EOF
[[listener]]
bind = "127.0.0.1:$LOCAL_PORT"
allow_anonymous = true

[log]
level = "info"

$MIDGE_STORE

[[bridge]]
name = "bench"
addresses = ["127.0.0.1:$PROXY_PORT"]
protocol_version = "3.1.1"
cleansession = false
keepalive_interval = 5
restart_timeout = [1, 2]
try_private = true

[[bridge.topic]]
pattern = "bench/#"
direction = "out"
qos = $qos
EOF
        ;;
    mosquitto)
        # mosquitto started as root runs as the mosquitto user: it must write DIR.
        chmod a+rwx "$dir"
        cat >"$dir/mosquitto.conf" <<EOF
listener $LOCAL_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/
autosave_interval 1
max_queued_messages 0
log_dest stderr
$(for type in ${MOSQUITTO_LOG:-error warning notice}; do echo "log_type $type"; done)
log_timestamp_format %H:%M:%S

connection bench
address 127.0.0.1:$PROXY_PORT
topic bench/# out $qos
cleansession false
restart_timeout 1 2
keepalive_interval 5
try_private true
EOF
        ;;
    esac
}

# proxy COMMAND: sends COMMAND to the proxy and notes it, with its time into the stream.
proxy() {
    echo "$1" >&7
    note "proxy $1"
}

# note TEXT: one line of the run's schedule, with the seconds since the stream started.
note() {
    printf '%6.2f s  %s\n' "$(awk -v now="$EPOCHREALTIME" -v t0="$T0" 'BEGIN { print now - t0 }')" "$1" >>"$RUN/schedule.log"
    log "  $(tail -1 "$RUN/schedule.log")"
}

# at FRACTION: sleeps until FRACTION of the stream's nominal length has passed since it started.
at() {
    sleep "$(awk -v now="$EPOCHREALTIME" -v t0="$T0" -v d="$STREAM_S" -v f="$1" \
        'BEGIN { s = t0 + f * d - now; print (s > 0 ? s : 0) }')"
}

# distinct FILE: how many different lines FILE has.
distinct() { sort -u "$1" 2>/dev/null | wc -l; }

# run_one NAME QOS: one run of the outage test with NAME as LOCAL at QOS, into $WORK/NAME-qosQOS.
run_one() {
    local name=$1 qos=$2
    RUN=$WORK/$name-qos$qos
    mkdir -p "$RUN"
    chmod a+rx "$RUN"
    log "$name, QoS $qos: $MESSAGES messages at $RATE msg/s"

    # REMOTE: a Midge with a store, and the subscriber there.
    start_broker midge "$RUN/remote" "$MIDGE_STORE"
    local remote_port=$BROKER_PORT remote_pid=$BROKER_PID
    $PY "$CLIENTS" sub --port "$remote_port" --qos "$qos" --out "$RUN/received.txt" \
        --notify "$RUN/links.txt" >"$RUN/sub.log" 2>&1 &
    local sub_pid=$!
    STARTED_PIDS+=("$sub_pid")
    wait_line "$RUN/sub.log" '^ready' "$sub_pid" 20 || { log "subscriber not ready: $(tail -3 "$RUN/sub.log")"; return 1; }

    # The proxy, REMOTE's side fixed, controlled through a FIFO on fd 7.
    mkfifo "$RUN/proxy.in"
    local trace=()
    [[ $TRACE == 1 ]] && trace=(--trace "$RUN/proxy.trace")
    $PY "$PROXY" "$remote_port" "${trace[@]}" <"$RUN/proxy.in" >"$RUN/proxy.out" 2>&1 &
    local proxy_pid=$!
    STARTED_PIDS+=("$proxy_pid")
    exec 7>"$RUN/proxy.in"
    wait_line "$RUN/proxy.out" '^port ' "$proxy_pid" 10 || { log "proxy did not start: $(cat "$RUN/proxy.out")"; return 1; }
    PROXY_PORT=$(awk '/^port / { print $2; exit }' "$RUN/proxy.out")

    # LOCAL, the bridge; the stream starts once its link is up (its state `1` at REMOTE).
    free_port LOCAL_PORT
    config_local "$name" "$RUN/local" "$qos"
    start_local "$name" "$RUN/local" || return 1
    wait_line "$RUN/links.txt" ' 1$' "$LOCAL_PID" 20 || log "  no link state 1 seen at REMOTE in 20 s; going on"

    T0=$EPOCHREALTIME
    local pub_log=()
    [[ $TRACE == 1 ]] && pub_log=(--log "$RUN/pub.trace")
    $PY "$CLIENTS" pub --port "$LOCAL_PORT" --qos "$qos" --count "$MESSAGES" --rate "$RATE" \
        "${pub_log[@]}" --acked "$RUN/acked.txt" --timeout 60 >"$RUN/pub.out" 2>"$RUN/pub.err" 7>&- &
    local pub_pid=$!
    STARTED_PIDS+=("$pub_pid")
    wait_line "$RUN/pub.out" '^start' "$pub_pid" 20 || { log "publisher did not start: $(tail -3 "$RUN/pub.err")"; return 1; }
    T0=$EPOCHREALTIME
    : >"$RUN/schedule.log"
    note "stream starts ($MESSAGES messages, nominally ${STREAM_S} s)"

    at 0.10
    proxy cut
    at 0.30
    proxy resume
    at 0.35
    proxy stall
    at 0.55
    proxy resume
    at 0.60
    kill -KILL "$LOCAL_PID"
    wait "$LOCAL_PID" 2>/dev/null || true
    stop_pid "$LOCAL_PID"
    note "LOCAL killed (kill -9)"
    at 0.70
    start_local "$name" "$RUN/local" || return 1
    note "LOCAL restarted on the same data"
    at 0.80
    proxy cut
    at 1.00
    proxy resume

    # The publisher ends when all are acknowledged or 60 s after its last message.
    wait "$pub_pid" || log "  publisher failed: $(tail -3 "$RUN/pub.err")"
    stop_pid "$pub_pid"
    note "publisher done: $(tail -1 "$RUN/pub.out")"

    # Until every acknowledged message has arrived (then 3 s more, for late duplicates), or
    # nothing new came for QUIET s, or DRAIN s passed.
    local wanted have last=-1 still=0 i
    wanted=$(distinct "$RUN/acked.txt")
    for ((i = 0; i < DRAIN; i++)); do
        have=$(sort -u "$RUN/received.txt" 2>/dev/null | grep -cxFf - "$RUN/acked.txt" || true)
        if ((have >= wanted)); then
            sleep 3
            break
        fi
        if ((have == last)); then
            still=$((still + 1))
            ((still >= QUIET)) && break
        else
            still=0 last=$have
        fi
        sleep 1
    done
    note "delivery settled: $(distinct "$RUN/received.txt") distinct of $wanted acknowledged, $(wc -l <"$RUN/received.txt") received"

    stop_pid "$sub_pid"
    echo quit >&7 || true
    exec 7>&-
    stop_pid "$proxy_pid"
    stop_pid "$LOCAL_PID"
    stop_pid "$remote_pid"
}

WORK=$(mktemp -d /tmp/midge-bridge.XXXXXX)
# mosquitto, as its own user, must reach its directory through the work directory.
chmod a+rx "$WORK"
trap stop_all EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
install_needed
STREAM_S=$(awk -v n="$MESSAGES" -v r="$RATE" 'BEGIN { print n / r }')
describe_machine | grep -v '^- Peers' >"$WORK/machine.md"
{
    echo "- Versions: $("$MIDGE" --version 2>/dev/null | head -1) (LOCAL and REMOTE); $(mosquitto -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//') (Debian), paho-mqtt $($PY -c 'import paho.mqtt; print(paho.mqtt.__version__)') (publisher, subscriber)"
} >>"$WORK/machine.md"

for qos in $QOS_LEVELS; do
    for broker in $BROKERS; do
        run_one "$broker" "$qos" || log "  $broker QoS $qos: the run failed (see above)"
        # Whatever is left of a failed run.
        exec 7>&- 2>/dev/null || true
        for pid in "${STARTED_PIDS[@]}"; do
            stop_pid "$pid"
        done
    done
done
elapsed=$(($(date +%s) - started))

command="bench/bridge.sh"
[[ $MESSAGES != 20000 || $RATE != 2000 ]] && command="MESSAGES=$MESSAGES RATE=$RATE $command"
[[ $QOS_LEVELS != "1 2" ]] && command="QOS_LEVELS=\"$QOS_LEVELS\" $command"
[[ $BROKERS != "midge mosquitto" ]] && command="BROKERS=\"$BROKERS\" $command"

$PY - "$WORK" "$MESSAGES" "$RATE" "$QOS_LEVELS" "$BROKERS" "$elapsed" "$command" >"$WORK/section.md" <<'EOF'
import json, os, sys

work, messages, rate, qos_levels, brokers, elapsed, command = sys.argv[1:8]
names = {"midge": "Midge", "mosquitto": "mosquitto"}


def lines(path):
    try:
        with open(path) as file:
            return [line.strip() for line in file if line.strip()]
    except OSError:
        return []


def ranges(numbers, most=12):
    """1,2,3,7 -> '1–3, 7', at most `most` ranges."""
    numbers = sorted(set(numbers))
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(f"{start}" if start == n else f"{start}–{n}")
            start = None
    text = ", ".join(out[:most])
    return text + (f", … ({len(out) - most} more ranges)" if len(out) > most else "")


rows, notes, schedules = [], [], []
for qos in qos_levels.split():
    for broker in brokers.split():
        run = os.path.join(work, f"{broker}-qos{qos}")
        if not os.path.isdir(run):
            continue
        label = f"{names.get(broker, broker)}, QoS {qos}"
        summary = {}
        for line in lines(os.path.join(run, "pub.out")):
            if line.startswith("{"):
                summary = json.loads(line)
        acked = {int(x) for x in lines(os.path.join(run, "acked.txt"))}
        received = [int(x) for x in lines(os.path.join(run, "received.txt")) if x.isdigit()]
        seen, duplicates, out_of_order, highest = set(), [], [], -1
        for seq in received:
            if seq in seen:
                duplicates.append(seq)
                continue
            seen.add(seq)
            if seq < highest:
                out_of_order.append(seq)
            highest = max(highest, seq)
        lost = acked - seen
        unacked_delivered = seen - acked
        sent = f"{summary['sent']:,}" if summary else "–"
        rows.append(f"| {names.get(broker, broker)} | {qos} | {sent} | {len(acked):,} | {len(seen):,} | "
                    f"{len(lost):,} | {len(duplicates):,} | {len(out_of_order):,} |")
        detail = []
        if lost:
            detail.append(f"lost {ranges(lost)}")
        if duplicates:
            detail.append(f"duplicated {ranges(duplicates)}")
        if out_of_order:
            detail.append(f"out of order {ranges(out_of_order)}")
        if unacked_delivered:
            detail.append(f"delivered though never acknowledged {ranges(unacked_delivered)}")
        if not summary:
            detail.append("the publisher left no summary (the run failed)")
        for fresh in summary.get("fresh_sessions", []):
            detail.append(f"the publisher gave up its session and started a fresh one {fresh} (LOCAL closed every reconnection of the restored session)")
        if detail:
            notes.append(f"- {label}: " + "; ".join(detail) + ".")
        steps = []
        for line in lines(os.path.join(run, "schedule.log")):
            seconds, _, text = line.partition(" s  ")
            steps.append((text.split(":")[0].split(" (")[0], seconds.strip()))
        schedules.append((label, steps))

stream = int(messages) / float(rate)
print(f"`{command}`: {int(messages):,} messages at {float(rate):,.0f} msg/s (a nominal stream of {stream:g} s) per run, "
      f"the outages at the same fractions of it for both brokers. The whole script took {int(elapsed) // 60} min {int(elapsed) % 60} s.")
print()
with open(os.path.join(work, "machine.md")) as file:
    print(file.read().rstrip())
print()
print("| LOCAL (bridging) broker | QoS | published | acknowledged by LOCAL | delivered at REMOTE | lost ↓ | duplicates ↓ | out of order ↓ |")
print("|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
if notes:
    print()
    print("Which sequence numbers (payloads 0 to N-1):")
    print()
    print("\n".join(notes))
if schedules:
    print()
    print("<details><summary>The schedule as it ran, seconds from the stream's start</summary>")
    print()
    print("| step | " + " | ".join(label for label, _ in schedules) + " |")
    print("|---|" + "---|" * len(schedules))
    longest = max(len(steps) for _, steps in schedules)
    for i in range(longest):
        name = next((steps[i][0] for _, steps in schedules if i < len(steps)), "")
        cells = [steps[i][1] if i < len(steps) else "–" for _, steps in schedules]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("</details>")
EOF

cat "$WORK/section.md"
if [[ $UPDATE_DOC == 1 ]]; then
    replace_section bridge "$WORK/section.md" start
    log "docs/benchmarks.md updated (bridge section)"
fi
