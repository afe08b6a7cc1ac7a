#!/bin/sh
# mkdebian-cloud.sh — a debootstrapped Debian 12 (bookworm) cloud guest as one layer: the packages
# of testdata/mkdebian.sh plus cloud-init, openssh-server, cloud-guest-utils (growpart) and
# grub-pc-bin (GRUB's i386-pc modules, for the MBR/BIOS builds), with what the package scripts
# left behind kept as they left it: the build host's /etc/hostname, a machine-id, SSH host keys,
# debootstrap's "# UNCONFIGURED FSTAB FOR BASE SYSTEM". imgfab's first-boot preparation and
# `imgfab check` are tested on it. Needs root, debootstrap and the Go toolchain; reaches
# deb.debian.org via HTTP. (python3-cffi-backend is named: debootstrap does not resolve the virtual
# python3-cffi-backend-api-* that python3-cryptography depends on.)
#
# Outputs (under testdata/cache/debian-cloud/):
#   oci/     OCI image layout, tag "debian", epoch 1700000000
#   root/    the debootstrap tree (kept: a change to the packing does not re-run debootstrap)
# Idempotent, like mkdebian.sh; package downloads are shared with it (cache/debootstrap-debs).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache="$here/cache"
out="$cache/debian-cloud"
epoch=1700000000
mirror=http://deb.debian.org/debian
include=linux-image-amd64,systemd-sysv,systemd-boot-efi,udev,openssh-server,cloud-init,cloud-guest-utils,grub-pc-bin,python3-cffi-backend

log() { echo "mkdebian-cloud: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap)"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap not installed: apt-get install debootstrap"; exit 1; }

hash=$(cat "$0" $(ls "$here"/mkoci/*.go | grep -v _test.go) | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
mkdir -p "$out" "$cache/debootstrap-debs"
rm -f "$out/stamp"

rhash=$(printf '%s\n' "v1 bookworm minbase $include $mirror" | sha256sum | cut -d' ' -f1)
if [ ! -f "$out/root.stamp" ] || [ "$(cat "$out/root.stamp")" != "$rhash" ]; then
	log "debootstrap bookworm into $out/root (several minutes)"
	rm -f "$out/root.stamp"
	rm -rf "$out/root"
	debootstrap --variant=minbase --include="$include" --cache-dir="$cache/debootstrap-debs" \
		bookworm "$out/root" "$mirror" >"$out/debootstrap.log" 2>&1 ||
		{ tail -30 "$out/debootstrap.log" >&2; log "debootstrap failed, log: $out/debootstrap.log"; exit 1; }
	r="$out/root"
	for f in boot/vmlinuz-* boot/initrd.img-* usr/bin/cloud-init usr/sbin/sshd usr/bin/growpart \
		usr/lib/grub/i386-pc/boot.img; do
		ls "$r"/$f >/dev/null 2>&1 || { log "debootstrap left no /$f"; exit 1; }
	done
	ls "$r"/etc/ssh/ssh_host_*_key >/dev/null 2>&1 || { log "no SSH host keys: the identity test would be void"; exit 1; }
	# Root logs in without a password on the console (a test image only).
	sed -i 's/^root:[^:]*:/root::/' "$r/etc/shadow"
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/*_Packages
	echo "$rhash" >"$out/root.stamp"
fi

log "packing the OCI layout"
(cd "$repo" && go build -o "$out/mkoci.tmp" ./testdata/mkoci)
rm -rf "$out/oci" "$out/oci.tmp"
"$out/mkoci.tmp" -o "$out/oci.tmp" -tag debian -epoch "$epoch" "$out/root"
mv "$out/oci.tmp" "$out/oci"
rm -f "$out/mkoci.tmp"
echo "$hash" >"$out/stamp"
echo "$out/oci"
