#!/bin/sh
# checkdemo-arm64.sh — boot the arm64 demo (testdata/mkdemo-arm64.sh) under qemu-system-aarch64 -M virt
# -cpu max (TCG) WITHOUT imgfab, to prove the fixture itself works.
#
#   testdata/checkdemo-arm64.sh                       make a GPT disk with sgdisk, mkfs.vfat + mtools and
#                                                     mkfs.ext4 -d: partition 1 an ESP with the fixture's
#                                                     systemd-bootaa64.efi as /EFI/BOOT/BOOTAA64.EFI, a
#                                                     loader entry and the kernel + initrd; partition 2
#                                                     the root (cache/demo-arm64/root). Boot it.
#   testdata/checkdemo-arm64.sh DISK FORMAT PARTUUID  boot an existing disk (e.g. one imgfab made) whose
#                                                     root partition has unique GUID PARTUUID
#
# MODE picks how the kernel is started (default: loader without arguments, kernel with them):
#   loader   AAVMF boots the disk: /EFI/BOOT/BOOTAA64.EFI (systemd-boot) -> loader entry -> the kernel's
#            EFI stub. No -kernel: the command line can only come from the loader entry.
#   kernel   AAVMF + -kernel/-initrd from cache/demo-arm64/root/boot: the firmware starts the kernel
#            through its EFI stub (no loader involved)
#   direct   no firmware: qemu loads the Image itself (-kernel/-initrd)
# The command line is "console=ttyAMA0 root=PARTUUID=... rw imgfab.test" (ttyAMA0: the virt
# machine's PL011 UART). Firmware: $AAVMF_CODE (default /usr/share/AAVMF/AAVMF_CODE.fd, read-only
# pflash 0) and a copy of $AAVMF_VARS (default /usr/share/AAVMF/AAVMF_VARS.fd, pflash 1), Debian's
# qemu-efi-aarch64. PASS needs IMGFAB-BOOT-OK and IMGFAB-FS-OK on the serial console and qemu powering
# off within $TIMEOUT (default 300) seconds; in the loader and kernel modes also "EFI stub: " (the
# kernel was started as an EFI application). Exit status 0 on PASS. Log: cache/demo-arm64/check/serial.log.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
demo="$here/cache/demo-arm64"
work="$demo/check"
timeout=${TIMEOUT:-300}
code=${AAVMF_CODE:-/usr/share/AAVMF/AAVMF_CODE.fd}
vars=${AAVMF_VARS:-/usr/share/AAVMF/AAVMF_VARS.fd}

log() { echo "checkdemo-arm64: $*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 not installed: apt-get install $2"; exit 1; }; }
need qemu-system-aarch64 qemu-system-arm

[ -f "$demo/kver" ] || { log "no arm64 demo fixture: run testdata/mkdemo-arm64.sh first"; exit 1; }
kver=$(cat "$demo/kver")
kernel="$demo/root/boot/vmlinuz-$kver"
initrd="$demo/root/boot/initrd.img-$kver"
mkdir -p "$work"

if [ $# -eq 0 ]; then
	mode=${MODE:-loader}
	need sgdisk gdisk
	need mkfs.ext4 e2fsprogs
	need mkfs.vfat dosfstools
	need mcopy mtools
	partuuid=3f6e2a1d-8c4b-4e7a-9b5d-0a1b2c3d4e5f
	cmdline="console=ttyAMA0 root=PARTUUID=$partuuid rw imgfab.test"
	disk="$work/disk.raw"
	format=raw
	rm -f "$disk" "$work/esp.vfat" "$work/root.ext4"
	truncate -s 256M "$disk"
	sgdisk -o -n 1:2048:+96M -t 1:ef00 -c 1:esp -n 2:0:0 -t 2:8300 -u "2:$partuuid" -c 2:root "$disk" >/dev/null
	first() { sgdisk -i "$1" "$disk" | awk '/First sector/ {print $3}'; }
	last() { sgdisk -i "$1" "$disk" | awk '/Last sector/ {print $3}'; }
	# ESP: systemd-boot at the removable-media path, one loader entry, the kernel and initrd.
	esp="$work/esp.vfat"
	truncate -s "$((($(last 1) - $(first 1) + 1) * 512))" "$esp"
	mkfs.vfat -n ESP "$esp" >/dev/null
	printf 'timeout 0\ndefault imgfab-demo.conf\n' >"$work/loader.conf"
	printf 'title imgfab demo (arm64)\nlinux /vmlinuz-%s\ninitrd /initrd.img-%s\noptions %s\n' \
		"$kver" "$kver" "$cmdline" >"$work/imgfab-demo.conf"
	mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
	mcopy -i "$esp" "$demo/root/usr/lib/systemd/boot/efi/systemd-bootaa64.efi" ::/EFI/BOOT/BOOTAA64.EFI
	mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
	mcopy -i "$esp" "$work/imgfab-demo.conf" ::/loader/entries/imgfab-demo.conf
	mcopy -i "$esp" "$kernel" "::/vmlinuz-$kver"
	mcopy -i "$esp" "$initrd" "::/initrd.img-$kver"
	dd if="$esp" of="$disk" bs=512 seek="$(first 1)" conv=notrunc,sparse status=none
	mkfs.ext4 -q -F -d "$demo/root" "$work/root.ext4" "$((($(last 2) - $(first 2) + 1) / 2))k" >/dev/null
	dd if="$work/root.ext4" of="$disk" bs=512 seek="$(first 2)" conv=notrunc,sparse status=none
	rm -f "$esp" "$work/root.ext4" "$work/loader.conf" "$work/imgfab-demo.conf"
elif [ $# -eq 3 ]; then
	mode=${MODE:-kernel}
	disk=$1 format=$2 partuuid=$3
	cmdline="console=ttyAMA0 root=PARTUUID=$partuuid rw imgfab.test"
else
	log "usage: [MODE=loader|kernel|direct] checkdemo-arm64.sh [DISK FORMAT PARTUUID]"
	exit 2
fi

set -- -M virt -cpu max -m 1024 -smp 2 -nographic -no-reboot -nic none
case "$mode" in
loader | kernel)
	[ -f "$code" ] && [ -f "$vars" ] || { log "no $code / $vars: apt-get install qemu-efi-aarch64"; exit 1; }
	cp "$vars" "$work/vars.fd"
	set -- "$@" -drive "if=pflash,format=raw,readonly=on,file=$code" -drive "if=pflash,format=raw,file=$work/vars.fd"
	;;
direct) ;;
*) log "MODE=$mode: loader, kernel or direct"; exit 2 ;;
esac
[ "$mode" = loader ] || set -- "$@" -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
set -- "$@" -drive "if=virtio,format=$format,file=$disk,snapshot=on"

serial="$work/serial.log"
log "booting $disk ($format) root=PARTUUID=$partuuid, kernel $kver, MODE=$mode (timeout ${timeout}s)"
log "qemu-system-aarch64 $*"
rc=0
timeout "$timeout" qemu-system-aarch64 "$@" </dev/null >"$serial" 2>&1 || rc=$?
rm -f "$work/vars.fd"

ok=1
grep -aq IMGFAB-BOOT-OK "$serial" || { log "no IMGFAB-BOOT-OK in $serial"; ok=0; }
grep -aq IMGFAB-FS-OK "$serial" || { log "no IMGFAB-FS-OK in $serial"; ok=0; }
grep -a IMGFAB-FS-FAIL "$serial" >&2 || true
if [ "$mode" != direct ]; then
	grep -aq 'EFI stub: ' "$serial" || { log "no \"EFI stub: \" in $serial: the kernel was not started by the firmware"; ok=0; }
fi
[ $rc = 0 ] || { log "qemu exit status $rc (124 = timeout)"; ok=0; }
if [ $ok = 1 ]; then
	echo "checkdemo-arm64: PASS"
	exit 0
fi
tail -40 "$serial" >&2
echo "checkdemo-arm64: FAIL"
exit 1
