#!/bin/sh
# mkdemo-bios.sh — the demo image plus GRUB for BIOS: a second layer with grub-pc-bin's
# /usr/lib/grub/i386-pc/ (what imgfab assembles core.img from) and an initramfs whose /init also
# resolves an MBR root=PARTUUID=SSSSSSSS-PP (disk signature, partition number in hex).
# Needs what mkdemo.sh needs (it runs it first).
#
# Outputs (under testdata/cache/demo-bios/):
#   oci/     OCI image layout, tag "demo": layer 1 = cache/demo/root, layer 2 = bios/
#   bios/    the second layer's tree;   debs/  grub-pc-bin's .deb
# Idempotent: if oci/ exists and neither this script nor mkdemo.sh / mkoci changed, prints the path.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$here/cache/demo-bios"
demo="$here/cache/demo"
epoch=1700000000

log() { echo "mkdemo-bios: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (device nodes in the initramfs)"; exit 1; }
"$here/mkdemo.sh" >/dev/null

hash=$(cat "$0" "$here/mkdemo.sh" $(ls "$here"/mkoci/*.go | grep -v _test.go) "$demo/stamp" | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
rm -f "$out/stamp"
mkdir -p "$out/debs"

if ! ls "$out/debs/grub-pc-bin_"*.deb >/dev/null 2>&1; then
	log "apt-get download grub-pc-bin"
	(cd "$out/debs" && apt-get -q -o APT::Sandbox::User=root download grub-pc-bin >&2)
fi
x="$out/extract"
rm -rf "$x" "$out/bios"
mkdir -p "$x" "$out/bios/usr/lib/grub" "$out/bios/boot"
dpkg-deb -x "$(ls "$out/debs/grub-pc-bin_"*.deb | tail -1)" "$x"
[ -f "$x/usr/lib/grub/i386-pc/kernel.img" ] || { log "no /usr/lib/grub/i386-pc/kernel.img in grub-pc-bin"; exit 1; }
cp -a "$x/usr/lib/grub/i386-pc" "$out/bios/usr/lib/grub/i386-pc"

# --- initramfs: the demo's, with an MBR branch in front of the GPT lookup --------------------------------
kver=$(cat "$demo/kver")
ir="$x/initramfs"
cp -a "$demo/initramfs" "$ir"
cat >"$x/find_mbr" <<'EOF'
# find_mbr SSSSSSSS-PP: prints /dev/NAME of partition 0xPP of the disk whose MBR disk signature
# (u32 LE at byte 440) is 0xSSSSSSSS — the kernel's PARTUUID for msdos partition tables.
find_mbr() {
	_sig=$(echo "${1%-*}" | tr A-F a-f)
	_num=$((0x${1#*-}))
	for d in /sys/block/*; do
		[ -e "$d/device" ] || continue
		disk=${d##*/}
		[ -b "/dev/$disk" ] || continue
		s=$(dd if="/dev/$disk" bs=1 skip=440 count=4 2>/dev/null | hexdump -v -e '1/1 "%02x"')
		[ "$(rev "$s")" = "$_sig" ] || continue
		for p in /sys/block/$disk/$disk*; do
			[ "$(cat "$p/partition" 2>/dev/null)" = "$_num" ] && { echo "/dev/${p##*/}"; return 0; }
		done
	done
	return 1
}

EOF
awk -v f="$x/find_mbr" '
	/^dev=$/ { while ((getline l < f) > 0) print l }
	/^\tPARTUUID=\*\)/ { print "\tPARTUUID=[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F]) dev=$(find_mbr \"${root#PARTUUID=}\") ;;" }
	{ print }' "$demo/initramfs/init" >"$ir/init"
grep -q 'find_mbr "' "$ir/init" && grep -q '^find_mbr()' "$ir/init" || { log "patching the demo init failed"; exit 1; }
sed -i 's/find root=PARTUUID= in the GPT/find root=PARTUUID= in the GPT or MBR/' "$ir/init"
chmod 755 "$ir/init"
find "$ir" -exec touch -h -d "@$epoch" {} +
(cd "$ir" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) | gzip -9n >"$out/bios/boot/initrd.img-$kver"

log "packing $out/oci"
rm -rf "$out/oci"
(cd "$repo" && go run ./testdata/mkoci -o "$out/oci" -tag demo -epoch "$epoch" "$demo/root" "$out/bios")
rm -rf "$x"
echo "$hash" >"$out/stamp"
echo "$out/oci"
