#!/usr/bin/env bash
# The hostile-client suite of issue 13 (part 5): what a broken, slow, greedy or malicious client
# does to everyone else. For each broker in turn and each attack, a fresh broker process:
#   1. the attacker (bench/hostile_attack.py: raw sockets, hand-built packets, from 127.0.0.2,
#      not the canary's 127.0.0.1) connects and sets itself up;
#   2. then a canary publisher/subscriber pair (`midge bench latency --rate RATE -q CANARY_QOS`)
#      measures end-to-end latency for WARMUP + CANARY seconds (HOLD for slowloris and the
#      maximum remaining length) while the attack runs; the attacker is stopped when the canary
#      is done (it stops by itself anyway a few seconds later). The broker's VmRSS is read
#      every 200 ms throughout.
# Before the attacks, the canary alone on a fresh broker gives the baseline; after them, once
# more, to show how much the (shared) machine moved meanwhile.
# Attacks: malformed packets of every decoder error class in 3.1, 3.1.1 and 5.0; slowloris
# (sockets that never send CONNECT, and CONNECTs sent a byte a second); a connect storm; a
# connect storm with a wrong password (the broker, for this attack alone, reads a password file
# made by mosquitto_passwd with the user canary, and the canary logs in as canary); one
# client subscribing SUB_FILTERS filters, and CHURN_CLIENTS clients subscribing and
# unsubscribing in a loop; a publisher at full speed to a topic nobody reads, and to one
# FANOUT_SUBSCRIBERS clients read; subscribers that never read their socket, with QoS 0 and
# QoS 1 traffic at full speed, and on the canary's own topic; packets announcing the largest
# remaining length (268,435,455) and then nothing; a client id taken over in a tight loop.
# The attacker runs at nice ATTACKER_NICE (19; 0 turns it off), the broker and the canary at
# normal priority: on a real network the attacker is another machine, and here its own CPU
# would otherwise compete with theirs, so the table would measure the OS scheduler rather than
# what the broker lets the attacker do to others.
# Prints one table, the brokers side by side per attack: canary p50/p99 and p99 against the
# baseline, canary published/delivered/lost, broker RSS before/peak/end, broker log lines with
# limit words and what Midge's limits counted (its shutdown totals), and what the attacker
# observed; then what each malformed packet was answered, and the log lines themselves.
# Rewrites the "hostile" section of docs/benchmarks.md (UPDATE_DOC=1, the default).
#
#   bench/hostile.sh                              midge and mosquitto, the defaults: about 10 min
#   QUICK=1 UPDATE_DOC=0 bench/hostile.sh         smaller attacks, 3 s canaries: about 4 min
#   BROKERS="midge midge-limits mosquitto" bench/hostile.sh    and Midge with LIMITS_TOML
#   BROKERS=midge ATTACKS="slowloris takeover" UPDATE_DOC=0 bench/hostile.sh
#   BROKERS="midge mosquitto" ATTACKS=auth-storm QUICK=1 UPDATE_DOC=0 bench/hostile.sh
#
# Bounded: every attack has its own time budget and counts, every bench and broker is stopped
# by its PID when done and on any exit (an attacker still running 30 s after it was told to
# stop is killed). Only 127.0.0.x is used. Needs python3 3.11 or later (asyncio.timeout), and
# for auth-storm mosquitto_passwd (Debian package mosquitto).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

QUICK=${QUICK:-0}
# sized FULL QUICK: the default of a setting, smaller with QUICK=1.
sized() { if [[ $QUICK == 1 ]]; then echo "$2"; else echo "$1"; fi; }

BROKERS=${BROKERS:-midge mosquitto}
ALL_ATTACKS="malformed slowloris connect-storm auth-storm sub-storm sub-churn publish-void
publish-fanout stalled-qos0 stalled-qos1 stalled-canary max-length takeover"
ATTACKS=${ATTACKS:-$ALL_ATTACKS}
RATE=${RATE:-1000}
CANARY_QOS=${CANARY_QOS:-1}
WARMUP=${WARMUP:-1}
CANARY=${CANARY:-$(sized 15 3)}
# slowloris and max-length: long enough to see a 10 s CONNECT timeout (Midge's default) act.
HOLD=${HOLD:-$(sized 25 11)}
SOURCES=${SOURCES:-127.0.0.2}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-60}
MALFORMED_WORKERS=${MALFORMED_WORKERS:-$(sized 50 20)}
SLOWLORIS_SOCKETS=${SLOWLORIS_SOCKETS:-$(sized 10000 2000)}
SLOWLORIS_TRICKLE=${SLOWLORIS_TRICKLE:-$(sized 100 20)}
CONCURRENCY=${CONCURRENCY:-100}
SUB_FILTERS=${SUB_FILTERS:-$(sized 100000 20000)}
CHURN_CLIENTS=${CHURN_CLIENTS:-$(sized 1000 200)}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-$(sized 1000 200)}
STALLED_SUBSCRIBERS=${STALLED_SUBSCRIBERS:-$(sized 100 20)}
MAXLEN_SOCKETS=${MAXLEN_SOCKETS:-$(sized 1000 200)}
TAKEOVER_LOOPS=${TAKEOVER_LOOPS:-4}
UPDATE_DOC=${UPDATE_DOC:-1}
# The attacker's niceness (nice -n): another machine's CPU on a real network, the lowest
# priority here (0: the same as the broker's and the canary's).
ATTACKER_NICE=${ATTACKER_NICE:-19}
# auth-storm: the canary's user in the password file, and its password (the attacker gives
# another).
PASSWORD_USER=canary
PASSWORD=canary-password
# midge-limits (in BROKERS, not by default): Midge with the limits that are off by default
# turned on, these settings appended to its config.
LIMITS_TOML=${LIMITS_TOML:-$'[connections]\nmax_connection_rate = 100\n\n[mqtt]\nmax_inbound_messages_per_second = 10000'}
# Midge logs at warn (lib.sh), and at info the lines of its server module: what every limit
# counted, logged at shutdown ("limits reached since start").
export RUST_LOG=${RUST_LOG:-warn,midge_server::server=info}
ATTACKER=$ROOT/bench/hostile_attack.py
# Broker log lines that name a limit being applied (and mosquitto's protocol errors, takeovers).
LIMIT_WORDS='\b(limits?|refus[a-z]*|closing|rate|quota|exceed[a-z]*|slow consumer|timeout|timed out)\b'

WORK=$(mktemp -d /tmp/midge-hostile.XXXXXX)
trap stop_all EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)"

# attack_args ATTACK: sets ARGS to the attacker's arguments and SECONDS_MEASURED to the
# canary's window.
attack_args() {
    SECONDS_MEASURED=$CANARY
    case $1 in
    malformed) ARGS=(malformed --workers "$MALFORMED_WORKERS") ;;
    slowloris)
        ARGS=(slowloris --sockets "$SLOWLORIS_SOCKETS" --trickle "$SLOWLORIS_TRICKLE" --concurrency "$CONCURRENCY")
        SECONDS_MEASURED=$HOLD
        ;;
    connect-storm) ARGS=(connect-storm --concurrency "$CONCURRENCY") ;;
    auth-storm)
        ARGS=(auth-storm --concurrency "$CONCURRENCY" --username "$PASSWORD_USER" --password "wrong-$PASSWORD")
        ;;
    sub-storm) ARGS=(sub-storm --filters "$SUB_FILTERS") ;;
    sub-churn) ARGS=(sub-churn --clients "$CHURN_CLIENTS") ;;
    publish-void) ARGS=(publish-void) ;;
    publish-fanout) ARGS=(publish-fanout --subscribers "$FANOUT_SUBSCRIBERS") ;;
    stalled-qos0) ARGS=(stalled-subscribers --subscribers "$STALLED_SUBSCRIBERS" --qos 0) ;;
    stalled-qos1) ARGS=(stalled-subscribers --subscribers "$STALLED_SUBSCRIBERS" --qos 1) ;;
    # The canary's topic is midge-bench/<run id>/latency: the filter takes it whatever the id.
    stalled-canary)
        ARGS=(stalled-subscribers --subscribers "$STALLED_SUBSCRIBERS" --qos 1 --topic 'midge-bench/#' --no-publisher)
        ;;
    max-length)
        ARGS=(max-length --sockets "$MAXLEN_SOCKETS" --concurrency "$CONCURRENCY")
        SECONDS_MEASURED=$HOLD
        ;;
    takeover) ARGS=(takeover --loops "$TAKEOVER_LOOPS") ;;
    *)
        log "unknown attack $1 (known: $(echo $ALL_ATTACKS))"
        return 1
        ;;
    esac
}

# sample_rss PID: prints "epoch-seconds VmRSS-KiB" every 200 ms while PID lives.
sample_rss() {
    local pid=$1 key value _
    while [[ -r /proc/$pid/status ]]; do
        while read -r key value _; do
            [[ $key == VmRSS: ]] && echo "$EPOCHREALTIME $value"
        done <"/proc/$pid/status" 2>/dev/null || true
        sleep 0.2
    done
}

# wait_bounded PID SECONDS: waits for PID to end (it was asked to), or kills it after SECONDS.
wait_bounded() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "  the attacker outlived its budget: stopped"
    fi
    stop_pid "$pid"
}

# run_phase BROKER ATTACK: a fresh broker, the attacker (none for the baseline) set up, the
# canary measured while it runs, the broker's memory read throughout. For auth-storm alone the
# broker reads the password file and the canary logs in.
run_phase() {
    local broker=$1 attack=$2
    local out=$WORK/results/$broker.$attack dir=$WORK/brokers/$broker.$attack
    SECONDS_MEASURED=$CANARY
    [[ $attack == baseline* ]] || attack_args "$attack"
    local passwords='' login=()
    if [[ $attack == auth-storm ]]; then
        passwords=$WORK/passwords
        login=(-u "$PASSWORD_USER" -P "$PASSWORD")
    fi
    if [[ $broker == midge-limits ]]; then
        BROKER_PASSWORDS=$passwords start_broker midge "$dir" $'[store]\npersistence = false\n\n'"$LIMITS_TOML" ||
            return 0
    else
        BROKER_PASSWORDS=$passwords start_broker "$broker" "$dir" || return 0
    fi
    sample_rss "$BROKER_PID" >"$out.rss" &
    local sampler=$!
    STARTED_PIDS+=("$sampler")
    sleep 0.3
    echo "start $EPOCHREALTIME" >"$out.marks"
    local attacker=''
    if [[ $attack != baseline* ]]; then
        # The canary's window and then some: the attacker is told to stop when the canary is done.
        local budget=$((WARMUP + SECONDS_MEASURED + 5))
        # At nice ATTACKER_NICE: the attacker's own CPU is another machine's on a real network.
        nice -n "$ATTACKER_NICE" python3 "$ATTACKER" "${ARGS[@]}" --port "$BROKER_PORT" --sources "$SOURCES" \
            --duration "$budget" --setup-timeout "$SETUP_TIMEOUT" --ready "$out.ready" >"$out.json" 2>"$out.err" &
        attacker=$!
        STARTED_PIDS+=("$attacker")
        local deadline=$((SECONDS + SETUP_TIMEOUT + 5))
        while [[ ! -e $out.ready ]] && kill -0 "$attacker" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        [[ -e $out.ready ]] || log "  the attacker did not set up: $(tail -1 "$out.err" 2>/dev/null)"
    fi
    echo "ready $EPOCHREALTIME" >>"$out.marks"
    log "$broker: canary for ${WARMUP}+${SECONDS_MEASURED} s${attacker:+ during $attack}"
    run_bench latency --rate "$RATE" -q "$CANARY_QOS" -p "$BROKER_PORT" "${login[@]}" --warmup "$WARMUP" \
        -d "$SECONDS_MEASURED" --json --quiet >"$out.canary.json" 2>"$out.canary.err" ||
        log "  canary failed: $(tail -1 "$out.canary.err")"
    if [[ -n $attacker ]]; then
        kill -TERM "$attacker" 2>/dev/null || true
        wait_bounded "$attacker" 30
        [[ -s $out.json ]] || log "  the attacker left no result: $(tail -1 "$out.err")"
    fi
    echo "over $EPOCHREALTIME" >>"$out.marks"
    # The end reading: a second after the attacker has closed everything.
    sleep 1
    stop_pid "$sampler"
    stop_pid "$BROKER_PID"
    if [[ ! -s $out.rss ]]; then
        log "  no memory reading"
    fi
    # Midge's start and shutdown lines (its settings, its totals) are not limits acting.
    grep -v ' INFO midge_server::server: ' "$dir/broker.log" | grep -ciE "$LIMIT_WORDS" >"$out.limits" || true
    grep -v ' INFO midge_server::server: ' "$dir/broker.log" | grep -iE "$LIMIT_WORDS" >"$out.limit-lines" || true
    grep 'since start' "$dir/broker.log" >"$out.totals" || true
}

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "python3 3.11 or later is needed (asyncio.timeout)"
    exit 1
fi
if ! [[ $ATTACKER_NICE =~ ^-?[0-9]+$ ]]; then
    log "ATTACKER_NICE must be a number (nice -n), 0 to run the attacker at normal priority"
    exit 1
fi
passwords_needed=0
for attack in $ATTACKS; do
    attack_args "$attack"
    if [[ $attack == auth-storm ]]; then
        passwords_needed=1
    fi
done
install_peers
if ((passwords_needed)); then
    if ! command -v mosquitto_passwd >/dev/null; then
        log "mosquitto_passwd is needed for auth-storm (Debian package mosquitto)"
        exit 1
    fi
    # As bench/auth_storm.sh: mosquitto reads the password file as its own user.
    chmod a+rx "$WORK"
    mosquitto_passwd -c -b "$WORK/passwords" "$PASSWORD_USER" "$PASSWORD"
    chmod a+r "$WORK/passwords"
fi
started=$(date +%s)
describe_machine >"$WORK/machine.md"
mkdir -p "$WORK/results" "$WORK/brokers"

for broker in $BROKERS; do
    run_phase "$broker" baseline
    for attack in $ATTACKS; do
        run_phase "$broker" "$attack"
    done
    # The canary alone again: how much the machine itself moved during the run.
    run_phase "$broker" baseline-after
done
elapsed=$(($(date +%s) - started))

# The command line that reproduces the run (the settings that differ from the defaults).
command="bench/hostile.sh"
[[ $ATTACKS != "$ALL_ATTACKS" ]] && command="ATTACKS=\"$(echo $ATTACKS)\" $command"
[[ $BROKERS != "midge mosquitto" ]] && command="BROKERS=\"$BROKERS\" $command"
[[ $QUICK == 1 ]] && command="QUICK=1 $command"
[[ $ATTACKER_NICE != 19 ]] && command="ATTACKER_NICE=$ATTACKER_NICE $command"
python3 - "$WORK" "$BROKERS" "$ATTACKS" "$elapsed" "$command" "$RATE" "$CANARY_QOS" "$WARMUP" "$CANARY" \
    "$HOLD" "$LIMITS_TOML" "$ATTACKER_NICE" "$PASSWORD_USER" >"$WORK/section.md" <<'EOF'
import collections, json, os, re, sys

work, brokers, attacks, elapsed, command, rate, qos, warmup, canary, hold, limits_toml, nice, user = sys.argv[1:14]
brokers, attacks = brokers.split(), attacks.split()
names = {"midge": "Midge", "midge-limits": "Midge, limits on", "mosquitto": "mosquitto"}
titles = {
    "baseline": "none (baseline)",
    "baseline-after": "none (after the attacks)",
    "malformed": "malformed packets",
    "slowloris": "slowloris",
    "connect-storm": "connect storm",
    "auth-storm": "connect storm, wrong passwords",
    "sub-storm": "one client, many filters",
    "sub-churn": "subscribe/unsubscribe churn",
    "publish-void": "flood to a topic nobody reads",
    "publish-fanout": "flood to a topic many read",
    "stalled-qos0": "subscribers not reading, QoS 0 flood",
    "stalled-qos1": "subscribers not reading, QoS 1 flood",
    "stalled-canary": "subscribers not reading the canary's topic",
    "max-length": "maximum remaining length, then nothing",
    "takeover": "client id takeover loop",
}

def result(broker, attack, suffix):
    path = os.path.join(work, "results", f"{broker}.{attack}{suffix}")
    try:
        with open(path) as file:
            return json.load(file) if suffix.endswith(".json") else file.read()
    except (OSError, ValueError):
        return None

def us(value):
    if value is None:
        return "–"
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} µs"

def mib(kib):
    return f"{kib / 1024:,.1f}" if kib is not None else "–"

def memory(broker, attack):
    samples, marks = [], {}
    for line in (result(broker, attack, ".rss") or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            samples.append((float(parts[0]), int(parts[1])))
    for line in (result(broker, attack, ".marks") or "").splitlines():
        key, value = line.split()
        marks[key] = float(value)
    if not samples:
        return None, None, None
    start = marks.get("start", samples[0][0])
    before = [kib for at, kib in samples if at <= start] or [samples[0][1]]
    during = [kib for at, kib in samples if at >= start] or [samples[-1][1]]
    return before[-1], max(during), samples[-1][1]

def canary_cells(report, base):
    if not report:
        return ["failed", "–", "–"]
    latency = report.get("latency_us") or {}
    p50, p99 = latency.get("p50"), latency.get("p99")
    ratio = "–"
    base_p99 = ((base or {}).get("latency_us") or {}).get("p99")
    if p99 is not None and base_p99:
        ratio = f"{p99 / base_p99:.1f}×"
        if p99 > 2 * base_p99:
            ratio = f"**{ratio}**"
    counts = f"{report['sent']:,} / {report['delivered']:,} / {report['lost']:,}"
    # A publisher held back publishes less than its rate: its latency is then that of the few
    # messages that got through, and the table says so.
    expected = float(rate) * report.get("duration_s", 0)
    if expected and report["sent"] < 0.9 * expected:
        counts = f"**{counts}** (of {expected:,.0f} due)"
    if latency.get("count") is not None and expected and latency["count"] < 0.5 * expected:
        p99_note = f" ({latency['count']:,} timed)"
    else:
        p99_note = ""
    late = report.get("publisher_late_max_us") or 0
    if late >= 100_000:
        counts += f"; publisher up to {late / 1e6:.1f} s late"
    if report.get("duplicates"):
        counts += f" ({report['duplicates']:,} dup.)"
    if report.get("errors"):
        counts += f"; {report['errors']} errors: {report.get('first_error')}"
    return [f"{us(p50)} / {us(p99)}{p99_note}", ratio, counts]

def counted(broker, attack):
    """Log lines naming a limit; for Midge, what its limits counted and the messages it dropped
    (its shutdown totals)."""
    cell = (result(broker, attack, ".limits") or "").strip() or "–"
    totals = result(broker, attack, ".totals") or ""
    fields = {}
    for line in totals.splitlines():
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            if key != "connections" and key not in ("received", "sent", "wills"):
                fields[key] = int(value)
    nonzero = [f"{key} {value:,}" for key, value in fields.items() if value]
    if totals:
        cell += "; counted: " + (", ".join(nonzero) if nonzero else "none")
    return cell

header = ["attack", "broker", "canary p50 / p99", "p99 vs baseline", "canary published / delivered / lost",
          "RSS MiB before / peak / end", "log lines with limit words; counted (Midge)", "what the attacker saw"]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
failures = []
for attack in ["baseline"] + attacks + ["baseline-after"]:
    for broker in brokers:
        base = result(broker, "baseline", ".canary.json")
        report = result(broker, attack, ".canary.json")
        if report is None and attack.startswith("baseline") and result(broker, attack, ".rss") is None:
            continue
        before, peak, end = memory(broker, attack)
        limits = counted(broker, attack)
        seen = "–"
        if not attack.startswith("baseline"):
            attacker = result(broker, attack, ".json")
            if attacker is None:
                seen = "no result: " + ((result(broker, attack, ".err") or "").strip().splitlines() or ["?"])[-1]
                failures.append(f"{broker} {attack}")
            else:
                seen = attacker.get("summary", "?")
                if attacker.get("setup_complete") is False:
                    seen = f"(set-up incomplete after {attacker.get('setup_s')} s) " + seen
                if attacker.get("task_errors"):
                    seen += f" (attacker errors: {attacker['task_errors']})"
        if report is None:
            failures.append(f"{broker} {attack} canary: " + ((result(broker, attack, ".canary.err") or "").strip().splitlines() or ["?"])[-1])
        lines.append("| " + " | ".join([titles.get(attack, attack), names.get(broker, broker)]
                                       + canary_cells(report, base)
                                       + [f"{mib(before)} / {mib(peak)} / {mib(end)}", limits, seen.replace("|", "/")]) + " |")

print(f"Each attack ran against a fresh broker process while a canary publisher/subscriber pair "
      f"(`midge bench latency`, {int(float(rate)):,} msg/s, QoS {qos}, 64-byte payloads, from 127.0.0.1) "
      f"measured end-to-end latency for {warmup} s of warm-up then {canary} s ({hold} s for slowloris and the "
      f"maximum remaining length). The attacker (`bench/hostile_attack.py`, one Python process, from 127.0.0.2, "
      f"{'at nice ' + nice if int(nice) else 'at normal priority'}) "
      f"set itself up first and was stopped when the canary was done. The baseline is the canary alone on a "
      f"fresh broker before the attacks (the reference for the ratio) and again after them (how much the "
      f"shared machine moved meanwhile). Broker RSS (VmRSS) read every 200 ms: before the attacker started, "
      f"its peak, and a second after the attacker closed everything (memory freed but not yet given back by the "
      f"allocator still counts). Bold: p99 over twice the baseline, or a "
      f"canary that published less than 90 % of what its rate called for (its latency is then that of the "
      f"few messages that got through). Log lines with limit words: lines of the broker's log (Midge at `warn`, "
      f"mosquitto's errors and warnings) with limit, refused, closing, rate, quota, exceeded, slow consumer "
      f"or timeout; counted: the limits Midge counted, and the messages it dropped, as it logs them at "
      f"shutdown (`limits reached since start`, `totals since start`). `{command}` took "
      f"{int(elapsed) // 60} min {int(elapsed) % 60} s (the build excluded).")
if "auth-storm" in attacks:
    print()
    print(f"For the wrong-password storm alone, the broker read a password file made by `mosquitto_passwd` "
          f"holding the user `{user}`, the attacker's CONNECTs gave that user name with a wrong password, and "
          f"the canary logged in as `{user}` with the right one.")
if "midge-limits" in brokers:
    print()
    settings, table = [], ""
    for line in (line.strip() for line in limits_toml.splitlines()):
        if line.startswith("["):
            table = line
        elif line:
            settings.append(f"`{line}` in `{table}`")
    print("“Midge, limits on” is Midge with these settings added to its configuration (`LIMITS_TOML`): "
          + ", ".join(settings) + ".")
print()
with open(os.path.join(work, "machine.md")) as file:
    print(file.read().rstrip())
print()
print("\n".join(lines))

# What each malformed packet got, broker by broker and version by version (Midge with its limits
# on answers as Midge does, when its connection rate lets the attacker in at all).
cases = collections.OrderedDict()
matrix_brokers = [broker for broker in brokers if broker != "midge-limits"]
for broker in matrix_brokers:
    report = result(broker, "malformed", ".json") or {}
    for key, outcomes in report.get("cases", {}).items():
        name, version = key.rsplit("|", 1)
        ranked = sorted(((outcome, count) for outcome, count in outcomes.items() if outcome != "could not connect"),
                        key=lambda item: -item[1])
        if not ranked:
            continue
        text = ranked[0][0] if len(ranked) == 1 else " / ".join(f"{outcome} ({count})" for outcome, count in ranked[:3])
        cases.setdefault(name, {})[(broker, version)] = text
if cases:
    versions = ["3.1", "3.1.1", "5.0"]
    print()
    print("Malformed packets: what the attacker read back, per case (each sent as the first packet, or after "
          "a valid CONNECT and its CONNACK when the name says so), on a connection of its own; `close`: the "
          "broker closed the connection; `open`: no answer and still open after 1 s; codes in hex "
          "(3.x CONNACK return codes too).")
    print()
    columns = [f"{names.get(broker, broker)} {version}" for broker in matrix_brokers for version in versions]
    print("| case | " + " | ".join(columns) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for name, by in cases.items():
        print(f"| {name} | " + " | ".join(by.get((broker, version), "–")
                                         for broker in matrix_brokers for version in versions) + " |")

# The limit lines themselves, without time stamps and fields, most frequent first.
notes = []
for broker in brokers:
    for attack in attacks:
        text = result(broker, attack, ".limit-lines") or ""
        messages = collections.Counter()
        for line in text.splitlines():
            line = re.sub(r"^\S+\s+(WARN|ERROR|INFO)\s+\S+:\s*", "", line)  # Midge: time, level, target
            line = re.sub(r"^\d+: ", "", line)  # mosquitto: time
            line = re.sub(r"\s\w+=(\"[^\"]*\"|\S+)", "", line)
            line = re.sub(r"\d+", "N", line)
            messages[line.strip()[:140]] += 1
        if messages:
            top = "; ".join(f"{count:,} × “{message}”" for message, count in messages.most_common(3))
            notes.append(f"- {names.get(broker, broker)}, {titles.get(attack, attack)}: {top}")
if notes:
    print()
    print("Log lines with limit words, by attack (numbers shown as N, fields left out):")
    print()
    print("\n".join(notes))
if failures:
    print()
    print("Runs without a result: " + "; ".join(failures) + ".")
EOF

cat "$WORK/section.md"
if [[ $UPDATE_DOC == 1 ]]; then
    replace_section hostile "$WORK/section.md"
    log "docs/benchmarks.md updated"
fi
