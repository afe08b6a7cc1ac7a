#!/bin/sh
# checkdemo.sh — boot the demo under qemu (TCG) WITHOUT imgfab, to prove the fixture itself works.
#
#   testdata/checkdemo.sh                       make a GPT disk from cache/demo/root with sgdisk and
#                                               mkfs.ext4 -d, then boot it
#   testdata/checkdemo.sh DISK FORMAT PARTUUID  boot an existing disk (e.g. one imgfab made) whose root
#                                               partition has unique GUID PARTUUID
#
# The kernel and initrd are passed with -kernel/-initrd from cache/demo/root/boot (no bootloader
# involved), the command line is "console=ttyS0 root=PARTUUID=... rw imgfab.test". PASS needs
# IMGFAB-BOOT-OK and IMGFAB-FS-OK on the serial console and qemu powering off within $TIMEOUT
# (default 180) seconds. Exit status 0 on PASS. Log: cache/demo/check/serial.log.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
demo="$here/cache/demo"
work="$demo/check"
timeout=${TIMEOUT:-180}

log() { echo "checkdemo: $*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 not installed: apt-get install $2"; exit 1; }; }
need qemu-system-x86_64 qemu-system-x86

[ -f "$demo/kver" ] || { log "no demo fixture: run testdata/mkdemo.sh first"; exit 1; }
kver=$(cat "$demo/kver")
mkdir -p "$work"

if [ $# -eq 0 ]; then
	need sgdisk gdisk
	need mkfs.ext4 e2fsprogs
	partuuid=6a1d7c1e-3f0b-4c5e-9d2a-1f2e3d4c5b6a
	disk="$work/disk.raw"
	format=raw
	rm -f "$disk" "$work/root.ext4"
	truncate -s 64M "$disk"
	sgdisk -o -n 1:2048:0 -t 1:8300 -u "1:$partuuid" -c 1:root "$disk" >/dev/null
	first=$(sgdisk -i 1 "$disk" | awk '/First sector/ {print $3}')
	last=$(sgdisk -i 1 "$disk" | awk '/Last sector/ {print $3}')
	mkfs.ext4 -q -F -d "$demo/root" "$work/root.ext4" "$(((last - first + 1) / 2))k" >/dev/null
	dd if="$work/root.ext4" of="$disk" bs=512 seek="$first" conv=notrunc,sparse status=none
	rm -f "$work/root.ext4"
elif [ $# -eq 3 ]; then
	disk=$1 format=$2 partuuid=$3
else
	log "usage: checkdemo.sh [DISK FORMAT PARTUUID]"
	exit 2
fi

serial="$work/serial.log"
log "booting $disk ($format) root=PARTUUID=$partuuid, kernel $kver (timeout ${timeout}s)"
rc=0
timeout "$timeout" qemu-system-x86_64 -machine q35 -m 1024 -smp 2 -nographic -no-reboot -nic none \
	-kernel "$demo/root/boot/vmlinuz-$kver" -initrd "$demo/root/boot/initrd.img-$kver" \
	-append "console=ttyS0 root=PARTUUID=$partuuid rw imgfab.test" \
	-drive "if=virtio,format=$format,file=$disk,snapshot=on" </dev/null >"$serial" 2>&1 || rc=$?

ok=1
grep -aq IMGFAB-BOOT-OK "$serial" || { log "no IMGFAB-BOOT-OK in $serial"; ok=0; }
grep -aq IMGFAB-FS-OK "$serial" || { log "no IMGFAB-FS-OK in $serial"; ok=0; }
grep -a IMGFAB-FS-FAIL "$serial" >&2 || true
[ $rc = 0 ] || { log "qemu exit status $rc (124 = timeout)"; ok=0; }
if [ $ok = 1 ]; then
	echo "checkdemo: PASS"
	exit 0
fi
tail -40 "$serial" >&2
echo "checkdemo: FAIL"
exit 1
