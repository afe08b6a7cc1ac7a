#!/bin/sh
# mkdebian.sh — a debootstrapped Debian 12 (bookworm) as a two-layer image, for the acceptance test and
# the benchmark. Needs root, debootstrap, GNU tar and the Go toolchain; reaches deb.debian.org via HTTP.
#
# Outputs (under testdata/cache/debian/):
#   oci/          OCI image layout, tag "debian", OCI media types
#   oci-docker/   the same image with Docker v2 schema 2 media types
#   rootfs.tar    the layer-1 tree as one tar (for the standard-tool pipeline benchmark)
#   layer1/       debootstrap --variant=minbase tree (kept: a rerun after a script change repacks fast)
#   layer2/       whiteouts + opaque dir + marker (see testdata/README.md)
#
# Idempotent: if the outputs exist and neither this script nor testdata/mkoci changed, prints the path
# and exits. The debootstrap tree has its own stamp (hash of the debootstrap step), so changes to the
# packing or to layer 2 do not re-run debootstrap. Package downloads are cached in cache/debootstrap-debs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache="$here/cache"
out="$cache/debian"
epoch=1700000000
mirror=http://deb.debian.org/debian
include=linux-image-amd64,systemd-sysv,systemd-boot-efi,udev

log() { echo "mkdebian: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap)"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap not installed: apt-get install debootstrap"; exit 1; }

hash=$(cat "$0" $(ls "$here"/mkoci/*.go | grep -v _test.go) | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] &&
	[ -f "$out/oci/index.json" ] && [ -f "$out/oci-docker/index.json" ] && [ -f "$out/rootfs.tar" ]; then
	echo "$out/oci"
	exit 0
fi
mkdir -p "$out" "$cache/debootstrap-debs"
rm -f "$out/stamp"

# --- layer 1: debootstrap -------------------------------------------------------------------------
# The stamp of this step covers only the lines that define the tree.
l1hash=$(printf '%s\n' "v1 bookworm minbase $include $mirror" | sha256sum | cut -d' ' -f1)
if [ ! -f "$out/layer1.stamp" ] || [ "$(cat "$out/layer1.stamp")" != "$l1hash" ]; then
	log "debootstrap bookworm into $out/layer1 (several minutes)"
	rm -f "$out/layer1.stamp"
	rm -rf "$out/layer1"
	debootstrap --variant=minbase --include="$include" --cache-dir="$cache/debootstrap-debs" \
		bookworm "$out/layer1" "$mirror" >"$out/debootstrap.log" 2>&1 ||
		{ tail -30 "$out/debootstrap.log" >&2; log "debootstrap failed, log: $out/debootstrap.log"; exit 1; }
	r="$out/layer1"
	ls "$r"/boot/vmlinuz-* >/dev/null 2>&1 || { log "no kernel in $r/boot"; exit 1; }
	ls "$r"/boot/initrd.img-* >/dev/null 2>&1 || { log "no initrd in $r/boot (update-initramfs did not run?)"; exit 1; }
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

# --- layer 2: whiteout, opaque dir, override, marker ------------------------------------------------
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
[ -e "$out/layer1/etc/motd" ] || { log "layer 1 has no /etc/motd: whiteout test would be void"; exit 1; }
[ -e "$out/layer1/etc/skel/.bashrc" ] || { log "layer 1 has no /etc/skel/.bashrc: opaque test would be void"; exit 1; }

# --- pack -------------------------------------------------------------------------------------------
log "packing OCI layouts"
(cd "$repo" && go build -o "$out/mkoci.tmp" ./testdata/mkoci)
rm -rf "$out/oci" "$out/oci-docker" "$out/oci.tmp" "$out/oci-docker.tmp"
"$out/mkoci.tmp" -o "$out/oci.tmp" -tag debian -epoch "$epoch" "$out/layer1" "$l2"
"$out/mkoci.tmp" -o "$out/oci-docker.tmp" -tag debian -epoch "$epoch" -docker "$out/layer1" "$l2"
mv "$out/oci.tmp" "$out/oci"
mv "$out/oci-docker.tmp" "$out/oci-docker"
rm -f "$out/mkoci.tmp"

log "writing rootfs.tar"
tar --sort=name --numeric-owner --xattrs --xattrs-include='*' --format=pax \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	--mtime="@$epoch" --clamp-mtime -C "$out/layer1" -cf "$out/rootfs.tar.tmp" .
mv "$out/rootfs.tar.tmp" "$out/rootfs.tar"

echo "$hash" >"$out/stamp"
echo "$out/oci"
