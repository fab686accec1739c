#!/usr/bin/env bash
# Tests the .deb end to end, as root (CI runs as root; otherwise it reruns itself under sudo):
# builds it from a midge binary (default: the debug one `cargo test` built), installs it with
# dpkg while policy-rc.d forbids starting services, checks its files, user and unit
# (systemd-analyze verify), starts the installed broker as the midge user with the packaged
# config on a free port, publishes to it with mosquitto_pub, then removes and purges the package
# and checks that nothing is left.
#
#   bash packaging/test.sh [MIDGE_BINARY]
#
# A midge package already installed on the machine is purged first, with its data: run this on
# CI machines and throwaway containers only.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec sudo --preserve-env=CARGO_TARGET_DIR bash "$0" "$@"
fi

here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-${CARGO_TARGET_DIR:-$(dirname "$here")/target}/debug/midge}"
work="$(mktemp -d)"
policy=/usr/sbin/policy-rc.d
added_policy=""
broker=""

say() { printf 'packaging: %s\n' "$*"; }
fail() {
    printf 'packaging: FAILED: %s\n' "$*" >&2
    exit 1
}
installed() { [ "$(dpkg-query -W -f='${Status}' midge 2>/dev/null)" != "" ] \
    && [ "$(dpkg-query -W -f='${Status}' midge 2>/dev/null)" != "unknown ok not-installed" ]; }

cleanup() {
    if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
    if installed; then dpkg -P midge >/dev/null 2>&1 || true; fi
    if [ -n "$added_policy" ]; then rm -f "$policy"; fi
    rm -rf "$work"
}
trap cleanup EXIT

[ -x "$binary" ] || fail "no midge binary at $binary (run cargo build or cargo test first)"

if installed; then
    say "purging the midge package left by an earlier run"
    dpkg -P midge >/dev/null
fi

# Nothing may start the service: the broker below runs on a free port, not 1883.
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added_policy=1
fi

# The debug binary is large and thrown away: no compression is the fastest.
deb="$(MIDGE_DEB_COMPRESSION=none bash "$here/build-deb.sh" "$binary" "$work")"
say "built $(basename "$deb")"

dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
for file in /usr/bin/midge /etc/midge/midge.toml /lib/systemd/system/midge.service \
    /usr/share/doc/midge/copyright; do
    [ -e "$file" ] || fail "$file not installed"
done
getent passwd midge >/dev/null || fail "no midge user"
[ "$(stat -c %U:%a /var/lib/midge)" = midge:750 ] || fail "/var/lib/midge: $(stat -c %U:%a /var/lib/midge)"
dpkg-query -W -f='${Conffiles}\n' midge | grep -q /etc/midge/midge.toml \
    || fail "/etc/midge/midge.toml is not a conffile"
say "installed: files, midge user, /var/lib/midge"

# verify only warns about unknown keys and the like: any line naming the unit fails the test.
verify="$(systemd-analyze verify /lib/systemd/system/midge.service 2>&1)" \
    || fail "systemd-analyze verify: $verify"
! grep -q midge <<<"$verify" || fail "systemd-analyze verify: $verify"
[ -L /etc/systemd/system/multi-user.target.wants/midge.service ] || fail "midge.service not enabled"
say "systemd-analyze verify: OK"

/usr/bin/midge serve --check -c /etc/midge/midge.toml >/dev/null || fail "the packaged config"
help="$(/usr/bin/midge --help)"
for command in serve pub sub shell bench passwd; do
    grep -q "^  $command " <<<"$help" || fail "midge --help does not list $command"
done

# The packaged config, on a port the system picks instead of 1883 (which may be taken), read
# by the midge user.
chmod 755 "$work"
sed 's|^bind = "127.0.0.1:1883"|bind = "127.0.0.1:0"|' /etc/midge/midge.toml >"$work/midge.toml"
grep -q '^bind = "127.0.0.1:0"' "$work/midge.toml" || fail "no 127.0.0.1:1883 listener in the packaged config"
chmod 644 "$work/midge.toml"
timeout 60 setpriv --reuid=midge --regid=midge --clear-groups \
    /usr/bin/midge serve -c "$work/midge.toml" >"$work/broker.log" 2>&1 &
broker=$!
port=""
for _ in $(seq 100); do
    port="$(grep -o 'local_addr=127.0.0.1:[0-9]*' "$work/broker.log" | head -n1 | cut -d: -f2)" || true
    [ -n "$port" ] && break
    kill -0 "$broker" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/broker.log" >&2; fail "the installed broker did not start"; }
open_files="$(grep -o 'open_files=[0-9]*' "$work/broker.log" | head -n1)" \
    || { cat "$work/broker.log" >&2; fail "no open_files figure logged"; }
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -r -t packaging/test -m ok \
    || { cat "$work/broker.log" >&2; fail "mosquitto_pub to the installed broker"; }
kill "$broker"
wait "$broker" 2>/dev/null || true
broker=""
[ -n "$(find /var/lib/midge -mindepth 1 -user midge -print -quit)" ] || fail "nothing stored in /var/lib/midge"
say "the installed broker ran as midge with the packaged config ($open_files), stored in /var/lib/midge"

dpkg -r midge >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -r"; }
[ ! -e /usr/bin/midge ] || fail "/usr/bin/midge left after dpkg -r"
[ -e /etc/midge/midge.toml ] || fail "dpkg -r removed the conffile"
dpkg -P midge >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -P"; }
installed && fail "midge still known to dpkg after dpkg -P"
for path in /etc/midge /var/lib/midge /var/log/midge /lib/systemd/system/midge.service \
    /etc/systemd/system/midge.service /etc/systemd/system/multi-user.target.wants/midge.service \
    /usr/share/doc/midge; do
    [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path left after dpkg -P"
done
getent passwd midge >/dev/null && fail "midge user left after dpkg -P"
getent group midge >/dev/null && fail "midge group left after dpkg -P"
say "dpkg -r and dpkg -P left nothing behind"
