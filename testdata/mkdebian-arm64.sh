#!/bin/sh
# mkdebian-arm64.sh — the arm64 twin of mkdebian.sh: a debootstrapped Debian 12 (bookworm) arm64 system
# as the same two-layer image (layer 1 the debootstrap tree, layer 2 the same whiteouts, opaque
# directory and marker), so testdata/debian-check's checks hold on it. Built on x86: the debootstrap
# first stage (--foreign) only downloads and unpacks; the second stage runs the arm64 maintainer
# scripts (and update-initramfs) in a chroot under qemu-user-static through binfmt_misc — a fixture
# step only, never a product step. Needs root, debootstrap, qemu-user-static, binfmt-support, jq, GNU
# tar and the Go toolchain; reaches deb.debian.org via HTTP.
#
# Outputs (under testdata/cache/debian-arm64/):
#   oci/      OCI image layout, tag "debian", OCI media types; image config architecture arm64, os linux
#             (testdata/mkoci writes amd64: the config is rewritten after packing, see set_arm64),
#             the index.json descriptor carries platform linux/arm64
#   layer1/   debootstrap --arch=arm64 --variant=minbase tree (kept: a rerun after a script change repacks)
#   layer2/   whiteouts + opaque dir + marker (as mkdebian.sh's; see testdata/README.md)
#
# Idempotent: if oci/ exists and neither this script nor testdata/mkoci changed, prints the path and
# exits. The debootstrap tree has its own stamp (layer1.stamp), so changes to the packing or to layer 2
# do not re-run debootstrap. Package downloads are cached in cache/debootstrap-debs-arm64.
# First run ~45 minutes on 2 cores (the second stage under emulation: mostly two mkinitramfs runs);
# the log is cache/debian-arm64/debootstrap.log.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache="$here/cache"
out="$cache/debian-arm64"
epoch=1700000000
mirror=http://deb.debian.org/debian
include=linux-image-arm64,systemd-sysv,systemd-boot-efi,udev

log() { echo "mkdebian-arm64: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, binfmt_misc)"
command -v debootstrap >/dev/null || die "debootstrap not installed: apt-get install debootstrap"
command -v jq >/dev/null || die "jq not installed: apt-get install jq"

# set_arm64 OCIDIR: testdata/mkoci always writes architecture amd64 into the image config. Rewrite the
# config's "architecture":"amd64" to "arm64" (same length, so every size stays), store it under its
# new digest, point the manifest at it (same length again), store the manifest under its new digest
# and point index.json at it, with platform linux/arm64 on the descriptor. Deterministic.
set_arm64() {
	_d=$1/blobs/sha256
	[ "$(jq '.manifests | length' "$1/index.json")" = 1 ] || die "set_arm64: $1 does not hold one manifest"
	_man=$(jq -r '.manifests[0].digest' "$1/index.json" | sed 's/^sha256://')
	_cfg=$(jq -r '.config.digest' "$_d/$_man" | sed 's/^sha256://')
	[ "$(grep -o '"architecture":"[a-z0-9]*"' "$_d/$_cfg")" = '"architecture":"amd64"' ] ||
		die "set_arm64: config $_cfg has no single \"architecture\":\"amd64\""
	sed 's/"architecture":"amd64"/"architecture":"arm64"/' "$_d/$_cfg" >"$_d/cfg.tmp"
	_ncfg=$(sha256sum "$_d/cfg.tmp" | cut -d' ' -f1)
	sed "s/sha256:$_cfg/sha256:$_ncfg/" "$_d/$_man" >"$_d/man.tmp"
	_nman=$(sha256sum "$_d/man.tmp" | cut -d' ' -f1)
	rm -f "$_d/$_cfg" "$_d/$_man"
	mv "$_d/cfg.tmp" "$_d/$_ncfg"
	mv "$_d/man.tmp" "$_d/$_nman"
	chmod 0644 "$_d/$_ncfg" "$_d/$_nman"
	jq --indent 3 --arg m "sha256:$_nman" \
		'.manifests[0].digest = $m | .manifests[0].platform = {"architecture": "arm64", "os": "linux"}' \
		"$1/index.json" >"$1/index.json.tmp"
	mv "$1/index.json.tmp" "$1/index.json"
	chmod 0644 "$1/index.json"
}

hash=$(cat "$0" $(ls "$here"/mkoci/*.go | grep -v _test.go) | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
mkdir -p "$out" "$cache/debootstrap-debs-arm64"
rm -f "$out/stamp"

# binfmt_misc: qemu-aarch64 registered (the second stage execs arm64 binaries). Debian's
# qemu-user-static registers it with the F flag (fix_binary: the interpreter is opened at
# registration, so it need not exist inside the chroot); without F the interpreter is copied into the
# chroot for the second stage and removed afterwards.
binfmt() {
	command -v qemu-aarch64-static >/dev/null ||
		die "qemu-user-static not installed: apt-get install qemu-user-static binfmt-support"
	[ -e /proc/sys/fs/binfmt_misc/register ] ||
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
		die "cannot mount binfmt_misc on /proc/sys/fs/binfmt_misc"
	if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
		command -v update-binfmts >/dev/null || die "binfmt-support not installed: apt-get install binfmt-support"
		update-binfmts --enable qemu-aarch64 >&2 || die "update-binfmts --enable qemu-aarch64 failed"
	fi
	grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "binfmt qemu-aarch64 not enabled"
}

# umount_under DIR: unmounts whatever is mounted at or below DIR (deepest first).
umount_under() {
	awk -v d="$1" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m" || true; done
}

# --- layer 1: debootstrap -------------------------------------------------------------------------
# The stamp of this step covers only the lines that define the tree.
l1hash=$(printf '%s\n' "v1 bookworm arm64 minbase $include $mirror" | sha256sum | cut -d' ' -f1)
if [ ! -f "$out/layer1.stamp" ] || [ "$(cat "$out/layer1.stamp")" != "$l1hash" ]; then
	r="$out/layer1"
	rm -f "$out/layer1.stamp"
	umount_under "$r"
	rm -rf "$r"
	binfmt
	log "debootstrap --arch=arm64 --foreign bookworm into $r (first stage: download + unpack)"
	debootstrap --arch=arm64 --foreign --variant=minbase --include="$include" \
		--cache-dir="$cache/debootstrap-debs-arm64" bookworm "$r" "$mirror" >"$out/debootstrap.log" 2>&1 ||
		{ tail -30 "$out/debootstrap.log" >&2; die "debootstrap first stage failed, log: $out/debootstrap.log"; }
	interp=$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)
	copied=
	if ! grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 && [ ! -e "$r$interp" ]; then
		mkdir -p "$r$(dirname "$interp")"
		cp "$(readlink -f "$interp")" "$r$interp"
		copied=$interp
	fi
	log "debootstrap --second-stage under qemu-aarch64 (~40 minutes)"
	trap 'umount_under "$r"' EXIT
	LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$r" /debootstrap/debootstrap --second-stage \
		>>"$out/debootstrap.log" 2>&1 ||
		{ tail -30 "$out/debootstrap.log" >&2; die "debootstrap second stage failed, log: $out/debootstrap.log"; }
	umount_under "$r"
	trap - EXIT
	[ -z "$copied" ] || rm -f "$r$copied"
	ls "$r"/boot/vmlinuz-* >/dev/null 2>&1 || die "no kernel in $r/boot"
	ls "$r"/boot/initrd.img-* >/dev/null 2>&1 || die "no initrd in $r/boot (update-initramfs did not run?)"
	# An arm64 Image has "ARM\x64" at offset 56.
	[ "$(od -An -c -j56 -N4 "$(ls "$r"/boot/vmlinuz-* | tail -1)" | tr -d ' ')" = 'ARMd' ] ||
		die "$(ls "$r"/boot/vmlinuz-* | tail -1) is not an arm64 Image"
	# Root logs in without a password (test image only); empty machine-id = first boot; no fstab
	# entries (the image's root comes from root=PARTUUID= on the kernel command line).
	sed -i 's/^root:[^:]*:/root::/' "$r/etc/shadow"
	echo debian-layer1 >"$r/etc/hostname"
	printf '# imgfab test image: root comes from the kernel command line\n' >"$r/etc/fstab"
	: >"$r/etc/machine-id"
	rm -f "$r/var/lib/dbus/machine-id"
	# Drop the download cache and logs: not part of an image.
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/*_Packages \
		"$r"/var/log/bootstrap.log
	echo "$l1hash" >"$out/layer1.stamp"
fi

# --- layer 2: whiteout, opaque dir, override, marker (as mkdebian.sh) ---------------------------------
l2="$out/layer2"
rm -rf "$l2"
mkdir -p "$l2/etc/skel"
: >"$l2/etc/.wh.motd"                                  # deletes /etc/motd of layer 1
: >"$l2/etc/skel/.wh..wh..opq"                         # hides .bashrc .profile .bash_logout of layer 1
echo "imgfab layer 2 skel" >"$l2/etc/skel/imgfab-skel.txt"
echo imgfab-debian >"$l2/etc/hostname"                 # overrides layer 1's "debian-layer1"
echo IMGFAB-LAYER2-OK >"$l2/etc/imgfab-layer2"         # marker
chmod 0755 "$l2/etc" "$l2/etc/skel"
chmod 0644 "$l2/etc/.wh.motd" "$l2/etc/skel/.wh..wh..opq" "$l2/etc/skel/imgfab-skel.txt" \
	"$l2/etc/hostname" "$l2/etc/imgfab-layer2"
[ -e "$out/layer1/etc/motd" ] || die "layer 1 has no /etc/motd: whiteout test would be void"
[ -e "$out/layer1/etc/skel/.bashrc" ] || die "layer 1 has no /etc/skel/.bashrc: opaque test would be void"

# --- pack -------------------------------------------------------------------------------------------
log "packing OCI layout"
(cd "$repo" && go build -o "$out/mkoci.tmp" ./testdata/mkoci)
rm -rf "$out/oci" "$out/oci.tmp"
"$out/mkoci.tmp" -o "$out/oci.tmp" -tag debian -epoch "$epoch" "$out/layer1" "$l2"
set_arm64 "$out/oci.tmp"
mv "$out/oci.tmp" "$out/oci"
rm -f "$out/mkoci.tmp"

echo "$hash" >"$out/stamp"
echo "$out/oci"
