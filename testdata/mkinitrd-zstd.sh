#!/bin/sh
# mkinitrd-zstd.sh — an early-microcode-style initrd made with the real tools, for inspect/initrd's
# tests: a small uncompressed cpio (kernel/x86/microcode/GenuineIntel.bin, `cpio -o -H newc`, padded
# by cpio to 512 bytes) followed by the Debian 12 fixture's initrd (gzip) recompressed with
# `zstd -19` — the layout initramfs-tools and dracut write. Needs testdata/mkdebian.sh's output,
# cpio, gzip and zstd; not root. About 50 s on 2 cores (zstd -19 of ~125 MiB).
#
# Output: testdata/cache/initrd-zstd/initrd.img
# Idempotent: when neither this script nor the Debian initrd changed, prints the path and exits.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out="$here/cache/initrd-zstd"
log() { echo "mkinitrd-zstd: $*" >&2; }

src=$(ls "$here"/cache/debian/layer1/boot/initrd.img-* 2>/dev/null | head -n 1)
[ -n "$src" ] || { log "no Debian initrd in testdata/cache/debian/layer1/boot: run testdata/mkdebian.sh first"; exit 1; }
for t in cpio gzip zstd sha256sum; do
	command -v $t >/dev/null || { log "$t not installed"; exit 1; }
done

hash=$(cat "$0" "$src" | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/initrd.img" ]; then
	echo "$out/initrd.img"
	exit 0
fi

rm -rf "$out"
mkdir -p "$out/early/kernel/x86/microcode"
printf 'imgfab test microcode\n' >"$out/early/kernel/x86/microcode/GenuineIntel.bin"
touch -d @1700000000 "$out/early" "$out/early/kernel" "$out/early/kernel/x86" "$out/early/kernel/x86/microcode" \
	"$out/early/kernel/x86/microcode/GenuineIntel.bin"
(cd "$out/early" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) >"$out/initrd.img.tmp"
gzip -dc "$src" | zstd -19 -T0 -q -c >>"$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
rm -rf "$out/early"
echo "$hash" >"$out/stamp"
log "made $out/initrd.img from $src"
echo "$out/initrd.img"
