#!/usr/bin/env bash
# A 3-server NATS cluster with JetStream on 127.0.0.1, for running the single-node tests against
# a node of a cluster (MIDGE_TEST_NATS_URLS; crates/midge/tests/support/mod.rs).
#
#   .ci/nats-cluster.sh start DIR   starts it (configs, stores, logs and PIDs in DIR), waits until
#                                   every server is healthy, prints the client URLs, comma-separated
#   .ci/nats-cluster.sh stop DIR    stops the servers it started, by their PIDs
#
# The binary is $MIDGE_NATS_SERVER (nats-server 2.11 or later), else nats-server on the PATH.
set -euo pipefail
command="${1:?start or stop}"
dir="${2:?a directory}"
nats="${MIDGE_NATS_SERVER:-nats-server}"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "$command" in
start)
    mkdir -p "$dir"
    declare -a client route http
    for i in 0 1 2; do
        client[$i]=$(free_port); route[$i]=$(free_port); http[$i]=$(free_port)
    done
    for i in 0 1 2; do
        routes=""
        for j in 0 1 2; do
            [ "$j" = "$i" ] || routes="$routes    \"nats-route://127.0.0.1:${route[$j]}\"\n"
        done
        printf 'server_name: n%s\nlisten: "127.0.0.1:%s"\nhttp: "127.0.0.1:%s"\njetstream { store_dir: "%s" }\ncluster {\n  name: midge-ci\n  listen: "127.0.0.1:%s"\n  routes: [\n%b  ]\n}\n' \
            "$i" "${client[$i]}" "${http[$i]}" "$dir/store-$i" "${route[$i]}" "$routes" > "$dir/n$i.conf"
        "$nats" -c "$dir/n$i.conf" > "$dir/n$i.log" 2>&1 &
        echo $! >> "$dir/pids"
    done
    deadline=$((SECONDS + 60))
    for i in 0 1 2; do
        until curl -fsS "http://127.0.0.1:${http[$i]}/healthz?js-enabled-only=true" >/dev/null 2>&1 \
            && curl -fsS "http://127.0.0.1:${http[$i]}/jsz" | grep -q '"leader": *"n'; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "nats-server n$i not ready within 60 s; its log:" >&2
                tail -n 30 "$dir/n$i.log" >&2
                exit 1
            fi
            sleep 0.2
        done
    done
    echo "nats://127.0.0.1:${client[0]},nats://127.0.0.1:${client[1]},nats://127.0.0.1:${client[2]}"
    ;;
stop)
    if [ -f "$dir/pids" ]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$dir/pids"
        rm -f "$dir/pids"
    fi
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
