#!/bin/sh
# checkdebian.sh — boot the Debian fixture under qemu (TCG) WITHOUT imgfab: systemd runs a command
# that checks the layer-2 whiteouts and powers off.
#
#   testdata/checkdebian.sh                       flatten cache/debian/layer1+layer2 (cp + whiteouts),
#                                                 make a GPT disk with sgdisk and mkfs.ext4 -d, boot it
#   testdata/checkdebian.sh DISK FORMAT PARTUUID  boot an existing disk (e.g. one imgfab made)
#
# Kernel and initrd (Debian's initramfs-tools one, which resolves root=PARTUUID= itself) come from
# cache/debian/layer1/boot via -kernel/-initrd. PASS needs IMGFAB-DEBIAN-OK on the console and qemu
# powering off within $TIMEOUT (default 400) seconds. Log: cache/debian/check/serial.log.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deb="$here/cache/debian"
work="$deb/check"
timeout=${TIMEOUT:-400}

log() { echo "checkdebian: $*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 not installed: apt-get install $2"; exit 1; }; }
need qemu-system-x86_64 qemu-system-x86

[ -f "$deb/layer1.stamp" ] || { log "no Debian fixture: run testdata/mkdebian.sh first"; exit 1; }
kernel=$(ls "$deb"/layer1/boot/vmlinuz-* | tail -1)
initrd=$(ls "$deb"/layer1/boot/initrd.img-* | tail -1)
mkdir -p "$work"

if [ $# -eq 0 ]; then
	need sgdisk gdisk
	need mkfs.ext4 e2fsprogs
	partuuid=0d1e2b3c-4a59-4687-9a1b-2c3d4e5f6071
	flat="$work/flat"
	log "flattening layer1 + layer2 into $flat"
	rm -rf "$flat"
	cp -a "$deb/layer1" "$flat"
	(cd "$deb/layer2" && find . -mindepth 1 | LC_ALL=C sort) | while read -r p; do
		base=${p##*/} dir=${p%/*}
		case "$base" in
		.wh..wh..opq) find "$flat/$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} + ;;
		.wh.*) rm -rf "$flat/$dir/${base#.wh.}" ;;
		esac
	done
	(cd "$deb/layer2" && find . -mindepth 1 ! -name '.wh.*' | LC_ALL=C sort) | while read -r p; do
		if [ -d "$deb/layer2/$p" ] && [ ! -L "$deb/layer2/$p" ]; then
			mkdir -p "$flat/$p"
		else
			rm -rf "$flat/$p"
			cp -a "$deb/layer2/$p" "$flat/$p"
		fi
	done
	disk="$work/disk.raw"
	format=raw
	rm -f "$disk" "$work/root.ext4"
	truncate -s 2G "$disk"
	sgdisk -o -n 1:2048:0 -t 1:8300 -u "1:$partuuid" -c 1:root "$disk" >/dev/null
	first=$(sgdisk -i 1 "$disk" | awk '/First sector/ {print $3}')
	last=$(sgdisk -i 1 "$disk" | awk '/Last sector/ {print $3}')
	log "mkfs.ext4 -d"
	mkfs.ext4 -q -F -d "$flat" "$work/root.ext4" "$(((last - first + 1) / 2))k" >/dev/null
	dd if="$work/root.ext4" of="$disk" bs=1M seek="$((first / 2048))" conv=notrunc,sparse status=none
	rm -rf "$work/root.ext4" "$flat"
elif [ $# -eq 3 ]; then
	disk=$1 format=$2 partuuid=$3
else
	log "usage: checkdebian.sh [DISK FORMAT PARTUUID]"
	exit 2
fi

# The check: whiteout deleted /etc/motd, opaque /etc/skel holds only layer 2's file, marker present,
# hostname from layer 2, and no whiteout file leaked into /etc. The marker is upper-cased at run time
# so that the kernel echoing its command line cannot fake it.
# No double quotes (kernel command line quoting) and no $ (systemd ExecStart= expansion) in it.
check='test ! -e /etc/motd && test -e /etc/skel/imgfab-skel.txt && ! ls -A /etc/skel | grep -qvx imgfab-skel.txt && grep -qx IMGFAB-LAYER2-OK /etc/imgfab-layer2 && grep -qx imgfab-debian /etc/hostname && ! ls -A /etc /etc/skel | grep -q ^[.]wh[.] && echo imgfab-debian-ok | tr a-z A-Z >/dev/console'
serial="$work/serial.log"
log "booting $disk ($format) root=PARTUUID=$partuuid with $(basename "$kernel") (timeout ${timeout}s)"
rc=0
timeout "$timeout" qemu-system-x86_64 -machine q35 -m 1024 -smp 2 -nographic -no-reboot -nic none \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 root=PARTUUID=$partuuid rw systemd.run=\"/bin/sh -c '$check'\" systemd.run_success_action=poweroff systemd.run_failure_action=poweroff" \
	-drive "if=virtio,format=$format,file=$disk,snapshot=on" </dev/null >"$serial" 2>&1 || rc=$?

ok=1
grep -aq IMGFAB-DEBIAN-OK "$serial" || { log "no IMGFAB-DEBIAN-OK in $serial"; ok=0; }
[ $rc = 0 ] || { log "qemu exit status $rc (124 = timeout)"; ok=0; }
if [ $ok = 1 ]; then
	echo "checkdebian: PASS"
	exit 0
fi
tail -40 "$serial" >&2
echo "checkdebian: FAIL"
exit 1
