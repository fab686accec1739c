#!/usr/bin/env bash
# The wrong-password connect storm of issue 10: does a flood of logins with a wrong password
# slow the clients already connected? Midge and mosquitto read the same password file (made by
# mosquitto_passwd, default $7$ hashes). For each broker in turn, a fresh process:
#   1. baseline: a canary publisher/subscriber pair of a real user (`midge bench latency
#      --rate RATE -u canary`) measures end-to-end latency for CANARY seconds, alone;
#   2. storm: the same canary again, and as its measurement starts, storms of CLIENTS
#      connections with the canary's user name and a wrong password (`midge bench conns -P ...`,
#      CONCURRENCY attempts at once) follow one another until the canary's window ends (at
#      most STORMS_MAX storms).
# Prints one table, the brokers side by side: canary p50/p99 alone and during the storms, their
# ratio, the canary's published/delivered/lost in both phases, refusals counted, and the time a
# storm of CLIENTS took. Rewrites the "auth-storm" section of docs/benchmarks.md.
#
#   bench/auth_storm.sh                                       midge and mosquitto, the defaults
#   CANARY=1 WARMUP=0 CLIENTS=200 UPDATE_DOC=0 bench/auth_storm.sh   a quick look
#
# Bounded: each bench has its own time budget, at most STORMS_MAX x CLIENTS connects; every
# broker and bench is stopped by its PID when done and on any exit. Only 127.0.0.1 is used.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BROKERS=${BROKERS:-midge mosquitto}
RATE=${RATE:-1000}
CANARY=${CANARY:-5}
WARMUP=${WARMUP:-1}
CLIENTS=${CLIENTS:-1000}
CONCURRENCY=${CONCURRENCY:-100}
STORMS_MAX=${STORMS_MAX:-50}
UPDATE_DOC=${UPDATE_DOC:-1}
PASSWORD=canary-password

WORK=$(mktemp -d /tmp/midge-auth-storm.XXXXXX)
trap stop_all EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)"

started=$(date +%s)
install_peers
if ! command -v mosquitto_passwd >/dev/null; then
    log "mosquitto_passwd is needed (Debian package mosquitto)"
    exit 1
fi
describe_machine >"$WORK/machine.md"
mkdir -p "$WORK/results"
# mosquitto reads the password file as its own user.
chmod a+rx "$WORK"
mosquitto_passwd -c -b "$WORK/passwords" canary "$PASSWORD"
chmod a+r "$WORK/passwords"

for broker in $BROKERS; do
    out=$WORK/results/$broker
    BROKER_PASSWORDS=$WORK/passwords start_broker "$broker" "$WORK/$broker" || continue
    # The canary: `midge bench latency` of the real user.
    canary_args=(latency --rate "$RATE" -u canary -P "$PASSWORD" -p "$BROKER_PORT" --broker-pid "$BROKER_PID"
        --warmup "$WARMUP" -d "$CANARY" --json --quiet)
    log "$broker: canary alone for $CANARY s"
    run_bench "${canary_args[@]}" >"$out.baseline.json" 2>"$out.baseline.err" ||
        log "  failed: $(tail -1 "$out.baseline.err")"

    log "$broker: canary during storms of $CLIENTS wrong passwords"
    "$MIDGE" bench "${canary_args[@]}" >"$out.storm.json" 2>"$out.storm.err" &
    canary=$!
    STARTED_PIDS+=("$canary")
    deadline=$(awk -v now="$(date +%s%N)" -v s="$WARMUP" -v d="$CANARY" 'BEGIN { printf "%.0f", now + (s + d) * 1e9 }')
    sleep "$WARMUP"
    storms=0
    while (($(date +%s%N) < deadline && storms < STORMS_MAX)); do
        storms=$((storms + 1))
        run_bench conns --connections "$CLIENTS" --concurrency "$CONCURRENCY" -u canary -P wrong-password \
            -p "$BROKER_PORT" -d 0.1 --json --quiet >"$out.wrong.$storms.json" 2>"$out.wrong.$storms.err" ||
            log "  storm $storms failed: $(tail -1 "$out.wrong.$storms.err")"
    done
    wait "$canary" || log "  canary failed: $(tail -1 "$out.storm.err")"
    stop_pid "$canary"
    stop_pid "$BROKER_PID"
done
elapsed=$(($(date +%s) - started))

python3 - "$WORK" "$BROKERS" "$RATE" "$CANARY" "$WARMUP" "$CLIENTS" "$CONCURRENCY" "$elapsed" >"$WORK/section.md" <<'EOF'
import glob, json, os, statistics, sys

work, brokers, rate, canary, warmup, clients, concurrency, elapsed = sys.argv[1:9]
names = {"midge": "Midge", "midge-base": "Midge (base)", "mosquitto": "mosquitto"}

def load(path):
    try:
        with open(path) as file:
            return json.load(file)
    except (ValueError, OSError):
        return None

def us(value):
    if value is None:
        return "–"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"

def percentiles(report):
    latency = (report or {}).get("latency_us") or {}
    return latency.get("p50"), latency.get("p99")

def counts(report):
    if not report:
        return "–"
    return f"{report['sent']:,} / {report['delivered']:,} / {report['lost']:,}"

def ratio(during, alone):
    return f"{during / alone:.2f}" if during is not None and alone else "–"

header = ["broker", "canary p50 / p99 alone", "p50 / p99 during the storms", "p50 ratio", "p99 ratio",
          "canary published / delivered / lost: alone; storms", "storms × clients", "refused",
          "other failures", "s per storm (median)", "refusals/s"]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
for broker in brokers.split():
    base = os.path.join(work, "results", broker)
    alone, during = load(base + ".baseline.json"), load(base + ".storm.json")
    storms = [r for r in (load(p) for p in sorted(glob.glob(base + ".wrong.*.json"))) if r]
    if alone is None and during is None and not storms:
        continue
    a50, a99 = percentiles(alone)
    d50, d99 = percentiles(during)
    refused = sum(r.get("refused_connects", 0) for r in storms)
    other = sum(r.get("failed", 0) - r.get("refused_connects", 0) for r in storms)
    seconds = [r["connect_s"] for r in storms if r.get("connect_s")]
    per_storm = statistics.median(seconds) if seconds else None
    lines.append("| " + " | ".join([
        names.get(broker, broker),
        f"{us(a50)} / {us(a99)}",
        f"{us(d50)} / {us(d99)}",
        ratio(d50, a50),
        ratio(d99, a99),
        f"{counts(alone)}; {counts(during)}",
        f"{len(storms)} × {int(clients):,}",
        f"{refused:,}",
        f"{other:,}",
        f"{per_storm:.2f}" if per_storm is not None else "–",
        f"{refused / sum(seconds):,.0f}" if seconds and sum(seconds) > 0 else "–",
    ]) + " |")

print(f"A canary pair of a real user at {int(float(rate)):,} msg/s, QoS 0, {warmup} s of warm-up then {canary} s "
      f"measured, alone and then while storms of {int(clients):,} connections with a wrong password "
      f"({concurrency} at once) follow one another; one password file made by mosquitto_passwd ($7$) for both "
      f"brokers, a fresh broker process per broker. Ratios are during/alone (above 1: the storm slowed the "
      f"canary). The whole script took {int(elapsed) // 60} min {int(elapsed) % 60} s.")
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
if [[ $UPDATE_DOC == 1 ]]; then
    replace_section auth-storm "$WORK/section.md"
    log "docs/benchmarks.md updated"
fi
