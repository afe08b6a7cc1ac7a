#!/bin/sh
# mkdebian-sb.sh — Debian 12 with the Secure Boot chain packages: testdata/mkdebian.sh's debootstrap tree
# (layer 1, whose linux-image-*-amd64 kernel is the signed one) plus a layer with shim-signed,
# shim-helpers-amd64-signed (mmx64.efi, fbx64.efi) and grub-efi-amd64-signed extracted with dpkg-deb -x
# (their maintainer scripts would run grub-install; an image does not need them).
# Needs root, apt-get, dpkg-deb and the Go toolchain.
#
# Outputs (under testdata/cache/debian-sb/):
#   oci/     OCI image layout, tag "debian-sb", epoch 1700000000 (layer 1 of cache/debian + layer sb/)
#   sb/      the extra layer;   debs/  the downloaded packages
# Idempotent: if oci/ exists and neither this script, mkdebian.sh nor testdata/mkoci changed, prints
# the path and exits.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$here/cache/debian-sb"
epoch=1700000000
pkgs="shim-signed shim-helpers-amd64-signed grub-efi-amd64-signed"

log() { echo "mkdebian-sb: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
hash=$(cat "$0" "$here/mkdebian.sh" $(ls "$here"/mkoci/*.go | grep -v _test.go) | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
rm -f "$out/stamp"
sh "$here/mkdebian.sh" >/dev/null
l1="$here/cache/debian/layer1"
ls "$l1"/boot/vmlinuz-* >/dev/null 2>&1 || { log "no kernel in $l1/boot"; exit 1; }

mkdir -p "$out/debs"
need=""
for p in $pkgs; do
	ls "$out/debs/${p}_"*.deb >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
	log "apt-get download$need"
	(cd "$out/debs" && apt-get -q -o APT::Sandbox::User=root download $need >&2)
fi

sb="$out/sb"
rm -rf "$sb"
mkdir -p "$sb"
for p in $pkgs; do
	dpkg-deb -x "$(ls "$out/debs/${p}_"*.deb | tail -1)" "$sb"
done
for f in usr/lib/shim/shimx64.efi.signed usr/lib/shim/mmx64.efi.signed usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed; do
	[ -f "$sb/$f" ] || { log "no /$f in $pkgs"; exit 1; }
done
find "$sb" -exec touch -h -d "@$epoch" {} +

log "packing $out/oci"
rm -rf "$out/oci"
(cd "$repo" && go run ./testdata/mkoci -o "$out/oci" -tag debian-sb -epoch "$epoch" "$l1" "$sb")
echo "$hash" >"$out/stamp"
echo "$out/oci"
