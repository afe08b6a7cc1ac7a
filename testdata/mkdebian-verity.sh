#!/bin/sh
# mkdebian-verity.sh — a debootstrapped Debian 12 (bookworm) for a read-only root under dm-verity, as one
# layer: imgfab lays it out as a GPT disk with an ESP (systemd-boot + a UKI of the systemd stub, the
# kernel, this initrd and imgfab's cmdline), the root as EROFS on partition 2 opened as /dev/mapper/root
# in the initrd, the verity hash tree on partition 3 and /var as ext4 on partition 4 (grown on first
# boot by systemd-repart + x-systemd.growfs). The cmdline is like
#   root=/dev/mapper/root rootfstype=erofs ro roothash=<hex> console=ttyS0
# and systemd-veritysetup-generator (systemd 252) turns roothash= into systemd-veritysetup@root.service
# with data device /dev/disk/by-partuuid/<first 128 bits> and hash device .../<last 128 bits>.
#
# dracut, not initramfs-tools, makes the initrd: dracut 059's modules.d/01systemd-veritysetup installs
# the generator, systemd-veritysetup (linked to libcryptsetup.so.12), the veritysetup targets and
# libcryptsetup, and pulls in 00systemd and 90dm (dmsetup and Debian's 55-dm.rules, so
# /dev/mapper/root becomes a device unit). debootstrap resolves "initramfs-tools | linux-initramfs-tool" to its first
# alternative, so the kernel and dracut are installed after debootstrap, with apt-get in the chroot
# (dracut Conflicts: initramfs-tools; initramfs-tools is never installed). INITRD=No keeps the
# package hooks from running dracut; the script writes /etc/dracut.conf.d/50-imgfab-verity.conf
# (hostonly=no: a generic initrd; systemd; systemd-veritysetup; dm-mod dm-verity erofs ext4 vfat
# virtio_blk virtio_pci virtio_scsi nvme ahci sd_mod; gzip; reproducible) and then runs
# `dracut --force --kver` in the chroot (/proc, /sys, /dev mounted for it, unmounted by a trap), and
# checks the result with lsinitrd. systemd-repart, systemd-growfs and systemd-veritysetup are in
# bookworm's systemd package (libcryptsetup12 is its dependency). Left as the packages left them:
# /etc/fstab (debootstrap's "# UNCONFIGURED FSTAB"; imgfab writes the root, ESP and /var lines),
# /etc/machine-id, no /etc/kernel/cmdline (imgfab supplies it). Root has an empty password.
# Needs root, debootstrap and the Go toolchain; reaches deb.debian.org via HTTP (debootstrap, and apt
# in the chroot).
#
# Outputs (under testdata/cache/debian-verity/):
#   oci/     OCI image layout, tag "debian", epoch 1700000000
#   root/    the tree (kept: a change to the packing does not re-run debootstrap)
#   kver     the kernel version;   lsinitrd.txt  the initrd's listing;   debootstrap.log apt.log dracut.log
# Idempotent, like mkdebian-cloud.sh: the root has its own stamp (the lines that define the tree,
# the dracut configuration included); package downloads are shared with the other Debian fixtures
# (cache/debootstrap-debs; apt's downloads in the chroot are seeded from it and copied back).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache="$here/cache"
out="$cache/debian-verity"
epoch=1700000000
mirror=http://deb.debian.org/debian
include=systemd-sysv,udev,systemd-boot-efi,libcryptsetup12
aptpkgs="linux-image-amd64 dracut"
drivers="dm-mod dm-verity erofs ext4 vfat virtio_blk virtio_pci virtio_scsi nvme ahci sd_mod"
dracutconf="# imgfab test image (testdata/mkdebian-verity.sh): a generic initrd that opens a dm-verity root.
hostonly=\"no\"
hostonly_cmdline=\"no\"
compress=\"gzip\"
reproducible=\"yes\"
add_dracutmodules+=\" systemd systemd-initrd dracut-systemd dm systemd-veritysetup \"
add_drivers+=\" $drivers \""

log() { echo "mkdebian-verity: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap)"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap not installed: apt-get install debootstrap"; exit 1; }

hash=$(cat "$0" $(ls "$here"/mkoci/*.go | grep -v _test.go) | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
mkdir -p "$out" "$cache/debootstrap-debs"
rm -f "$out/stamp"

r="$out/root"
unmount() {
	for m in dev sys proc; do
		if mountpoint -q "$r/$m" 2>/dev/null; then
			umount "$r/$m" || umount -l "$r/$m"
		fi
	done
}
trap unmount EXIT
trap 'exit 1' HUP INT TERM

rhash=$(printf '%s\n' "v1 bookworm minbase $include $mirror" "apt $aptpkgs" "$dracutconf" | sha256sum | cut -d' ' -f1)
if [ ! -f "$out/root.stamp" ] || [ "$(cat "$out/root.stamp")" != "$rhash" ]; then
	log "debootstrap bookworm into $r (several minutes)"
	rm -f "$out/root.stamp"
	unmount # a run killed mid-way may have left them mounted: never rm -rf through /dev
	rm -rf --one-file-system "$r"
	debootstrap --variant=minbase --include="$include" --cache-dir="$cache/debootstrap-debs" \
		bookworm "$r" "$mirror" >"$out/debootstrap.log" 2>&1 ||
		{ tail -30 "$out/debootstrap.log" >&2; log "debootstrap failed, log: $out/debootstrap.log"; exit 1; }

	mount -t proc proc "$r/proc"
	mount --bind /sys "$r/sys"
	mount --bind /dev "$r/dev"

	# The dracut configuration goes in first, so nothing is ever built without it.
	mkdir -p "$r/etc/dracut.conf.d"
	printf '%s\n' "$dracutconf" >"$r/etc/dracut.conf.d/50-imgfab-verity.conf"

	log "apt-get install $aptpkgs in the chroot"
	arch="$r/var/cache/apt/archives"
	for f in "$cache"/debootstrap-debs/*.deb; do
		ln "$f" "$arch/" 2>/dev/null || cp "$f" "$arch/"
	done
	{
		chroot "$r" env LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get -q update &&
			chroot "$r" env LC_ALL=C DEBIAN_FRONTEND=noninteractive INITRD=No \
				apt-get -q -y --no-install-recommends install $aptpkgs
	} >"$out/apt.log" 2>&1 ||
		{ tail -30 "$out/apt.log" >&2; log "apt-get failed, log: $out/apt.log"; exit 1; }
	for f in "$arch"/*.deb; do
		[ -e "$cache/debootstrap-debs/${f##*/}" ] || cp "$f" "$cache/debootstrap-debs/"
	done
	if chroot "$r" dpkg-query -W -f='${Status}\n' initramfs-tools 2>/dev/null | grep -q 'ok installed'; then
		log "initramfs-tools is installed: it, not dracut, would own the initrd"
		exit 1
	fi

	kver=$(cd "$r/lib/modules" && ls | sort -V | tail -1)
	[ -f "$r/boot/vmlinuz-$kver" ] || { log "no /boot/vmlinuz-$kver"; exit 1; }
	rm -f "$r"/boot/initrd.img-*
	log "dracut --kver $kver in the chroot"
	chroot "$r" env LC_ALL=C SOURCE_DATE_EPOCH="$epoch" \
		dracut --force --kver "$kver" "/boot/initrd.img-$kver" >"$out/dracut.log" 2>&1 ||
		{ tail -30 "$out/dracut.log" >&2; log "dracut failed, log: $out/dracut.log"; exit 1; }

	# The initrd must open the verity root by itself.
	chroot "$r" env LC_ALL=C lsinitrd "/boot/initrd.img-$kver" >"$out/lsinitrd.txt" ||
		{ log "lsinitrd failed"; exit 1; }
	# (paths as lsinitrd lists them, lib/ or usr/lib/; 55-dm.rules is Debian's name for 10-dm.rules)
	for f in lib/systemd/systemd lib/systemd/system-generators/systemd-veritysetup-generator \
		lib/systemd/systemd-veritysetup lib/systemd/system/veritysetup.target \
		'lib/x86_64-linux-gnu/libcryptsetup\.so\.12[.0-9]*' 'lib/udev/rules\.d/55-dm\.rules'; do
		grep -Eq " (usr/)?$f( -> .*)?\$" "$out/lsinitrd.txt" ||
			{ log "initrd has no /usr/$f (see $out/lsinitrd.txt)"; exit 1; }
	done
	for m in $drivers; do
		if ! grep -Eq "/$m\.ko(\.[a-z]+)?\$" "$out/lsinitrd.txt" &&
			! grep -Eq "/$m\.ko\$" "$r/lib/modules/$kver/modules.builtin"; then
			log "initrd has no $m.ko* and the kernel does not build it in (see $out/lsinitrd.txt)"
			exit 1
		fi
	done
	unmount

	for f in usr/lib/systemd/boot/efi/systemd-bootx64.efi usr/lib/systemd/boot/efi/linuxx64.efi.stub \
		usr/bin/systemd-repart usr/lib/systemd/systemd-growfs usr/lib/systemd/systemd-veritysetup \
		usr/lib/systemd/system-generators/systemd-veritysetup-generator; do
		[ -e "$r/$f" ] || { log "no /$f in the tree"; exit 1; }
	done
	# Root logs in without a password on the console (a test image only).
	sed -i 's/^root:[^:]*:/root::/' "$r/etc/shadow"
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin
	find "$r/var/lib/apt/lists" -maxdepth 1 -type f ! -name lock -exec rm -f {} +
	echo "$kver" >"$out/kver"
	echo "$rhash" >"$out/root.stamp"
fi
unmount

log "packing the OCI layout"
(cd "$repo" && go build -o "$out/mkoci.tmp" ./testdata/mkoci)
rm -rf "$out/oci" "$out/oci.tmp"
"$out/mkoci.tmp" -o "$out/oci.tmp" -tag debian -epoch "$epoch" "$r"
mv "$out/oci.tmp" "$out/oci"
rm -f "$out/mkoci.tmp"
echo "$hash" >"$out/stamp"
echo "$out/oci"
