#!/usr/bin/env bash
# Builds midge_VERSION_ARCH.deb from a built midge binary, with dpkg-deb alone:
#
#   cargo build --release -p midge
#   packaging/build-deb.sh target/release/midge [OUTDIR]
#
# The package: /usr/bin/midge (its debug info stripped), /etc/midge/midge.toml (a conffile: local listener only),
# /lib/systemd/system/midge.service, the docs in /usr/share/doc/midge, and the maintainer
# scripts of packaging/debian (the midge user, /var/lib/midge, the service enabled and started
# unless policy-rc.d says no). The version is the binary's own (`midge --version`).
# MIDGE_DEB_COMPRESSION (default xz) is dpkg-deb's -Z: CI packs its debug binary with gzip.
# MIDGE_DEB_MAINTAINER sets the Maintainer field.
# Prints the path of the .deb.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
binary="${1:?usage: build-deb.sh MIDGE_BINARY [OUTDIR]}"
outdir="${2:-.}"
compression="${MIDGE_DEB_COMPRESSION:-xz}"

version="$("$binary" --version | awk '{print $2}')"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

chmod 0755 "$stage"
# Without debug info (release builds keep line tables: debug = 1), as Debian ships binaries;
# the symbols stay, for backtraces.
install -d "$stage/usr/bin"
strip --strip-debug -o "$stage/usr/bin/midge" "$binary"
chmod 0755 "$stage/usr/bin/midge"
install -D -m 0644 "$here/midge.toml" "$stage/etc/midge/midge.toml"
install -D -m 0644 "$here/midge.service" "$stage/lib/systemd/system/midge.service"
doc="$stage/usr/share/doc/midge"
install -d "$doc"
install -m 0644 "$root/README.md" "$root/docs/configuration.md" "$root/docs/install.md" \
    "$root/docs/security.md" "$root/docs/migrating-from-mosquitto.md" "$doc/"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: midge

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

install -d "$stage/DEBIAN"
install -m 0755 "$here/debian/postinst" "$here/debian/prerm" "$here/debian/postrm" "$stage/DEBIAN/"
echo /etc/midge/midge.toml >"$stage/DEBIAN/conffiles"
size_kib="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: midge
Version: $version
Architecture: $arch
Maintainer: ${MIDGE_DEB_MAINTAINER:-Midge developers <midge@localhost>}
Installed-Size: $size_kib
Depends: libc6, adduser
Section: net
Priority: optional
Description: MQTT broker and command-line tools
 Midge is an MQTT 3.1, 3.1.1 and 5.0 broker with an MQTT-SN gateway, WebSocket, TLS and
 HTTP API listeners, and a persistent store. The midge command also publishes, subscribes,
 measures brokers and manages password files. The midge service listens on 127.0.0.1:1883.
CONTROL

mkdir -p "$outdir"
deb="$outdir/midge_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compression" --build "$stage" "$deb" >/dev/null
echo "$deb"
