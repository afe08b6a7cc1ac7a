#!/bin/sh
# mkdemo-uki.sh — the demo image for Unified Kernel Images: the demo root (testdata/mkdemo.sh) without
# systemd-bootx64.efi but with systemd-boot-efi's EFI stub /usr/lib/systemd/boot/efi/linuxx64.efi.stub,
# so a build can only boot it as a UKI. Needs root (device nodes), dpkg-deb and the Go toolchain.
#
# Outputs (under testdata/cache/demo-uki/):
#   oci/    OCI image layout, tag "demo-uki", epoch 1700000000
#   root/   the staged tree that was packed
# Idempotent: if oci/ exists and neither this script, mkdemo.sh nor testdata/mkoci changed, prints the
# path and exits.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$here/cache/demo-uki"
demo="$here/cache/demo"
epoch=1700000000

log() { echo "mkdemo-uki: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (device nodes)"; exit 1; }
hash=$(cat "$0" "$here/mkdemo.sh" $(ls "$here"/mkoci/*.go | grep -v _test.go) | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
rm -f "$out/stamp"
sh "$here/mkdemo.sh" >/dev/null
mkdir -p "$out"

r="$out/root"
rm -rf "$r" "$out/extract"
cp -a "$demo/root" "$r"
rm -f "$r/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
dpkg-deb -x "$(ls "$demo/debs/systemd-boot-efi_"*.deb | tail -1)" "$out/extract"
stub="$out/extract/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
[ -f "$stub" ] || { log "no linuxx64.efi.stub in systemd-boot-efi"; exit 1; }
cp "$stub" "$r/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
touch -d "@$epoch" "$r/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
rm -rf "$out/extract"

log "packing $out/oci"
rm -rf "$out/oci"
(cd "$repo" && go run ./testdata/mkoci -o "$out/oci" -tag demo-uki -epoch "$epoch" "$r")
echo "$hash" >"$out/stamp"
echo "$out/oci"
