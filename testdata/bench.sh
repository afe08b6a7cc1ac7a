#!/usr/bin/env bash
# bench.sh — `make bench`: imgfab against the standard-tool pipeline a user would script today, on
# the debootstrapped Debian fixture (testdata/mkdebian.sh), in the same run. Prints both wall times,
# the ratio, and imgfab's peak RSS. Needs root only for the standard pipeline's tar extraction
# (device nodes, ownership) — imgfab itself runs unprivileged.
#
# Standard pipeline: unpack each OCI layer (tar -xzf, whiteouts applied by hand) → mke2fs -d →
# mkfs.vfat + mcopy (systemd-boot, kernel, initrd, loader entries) → sgdisk → dd into a raw disk →
# qemu-img convert -O qcow2. Both produce the same partition layout and sizes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${IMGFAB:-$repo/imgfab}
runs=${BENCH_RUNS:-3}
for t in mke2fs mkfs.vfat mcopy mmd sgdisk qemu-img jq /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench: $t not installed (bash .ci/run --deps)" >&2; exit 1; }
done
oci=$(bash "$here/mkdebian.sh")
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000

now() { date +%s.%N; }

run_imgfab() {
	rm -f "$work/imgfab.qcow2"
	/usr/bin/time -f '%M' -o "$work/rss" "$bin" build --json "oci:$oci:debian" --cmdline console=ttyS0 \
		-o "$work/imgfab.qcow2" >"$work/imgfab.json"
}

run_standard() {
	local r="$work/std"
	rm -rf "$r" && mkdir -p "$r/root" "$r/esp"
	# 1. unpack the layers, applying OCI whiteouts
	local manifest
	manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="debian") | .digest' "$oci/index.json")
	for l in $(jq -r '.layers[].digest' "$oci/blobs/sha256/${manifest#sha256:}"); do
		local blob="$oci/blobs/sha256/${l#sha256:}"
		tar -tzf "$blob" | { grep -E '(^|/)\.wh\.' || true; } | while read -r wh; do
			d=$(dirname "$wh"); b=$(basename "$wh")
			if [ "$b" = ".wh..wh..opq" ]; then find "$r/root/$d" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
			else rm -rf "$r/root/$d/${b#.wh.}"; fi
		done
		tar -xzf "$blob" -C "$r/root" --numeric-owner --xattrs --xattrs-include='*' --exclude='.wh.*' \
			--exclude='*/.wh.*'
	done
	# 2. ext4 root, same size as imgfab's
	local rootsize espsize
	rootsize=$(jq '.partitions[1].size' "$work/imgfab.json")
	espsize=$(jq '.partitions[0].size' "$work/imgfab.json")
	truncate -s "$rootsize" "$r/root.img"
	E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -F -t ext4 -b 4096 -O ^resize_inode -d "$r/root" \
		"$r/root.img" "$((rootsize / 1024))k"
	# 3. ESP with systemd-boot, kernel and initrd
	local kver
	kver=$(cd "$r/root/boot" && ls vmlinuz-* | sed 's/^vmlinuz-//' | sort -V | tail -1)
	mkfs.vfat -F 32 -C "$r/esp.img" "$((espsize / 1024))" >/dev/null
	printf 'default debian.conf\ntimeout 0\n' >"$r/esp/loader.conf"
	printf 'title Debian\nlinux /debian/linux\ninitrd /debian/initrd\noptions root=LABEL=root rw console=ttyS0\n' >"$r/esp/debian.conf"
	mmd -i "$r/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/debian
	mcopy -i "$r/esp.img" "$r/root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
	mcopy -i "$r/esp.img" "$r/esp/loader.conf" ::/loader/loader.conf
	mcopy -i "$r/esp.img" "$r/esp/debian.conf" ::/loader/entries/debian.conf
	mcopy -i "$r/esp.img" "$r/root/boot/vmlinuz-$kver" ::/debian/linux
	mcopy -i "$r/esp.img" "$r/root/boot/initrd.img-$kver" ::/debian/initrd
	# 4. partition a raw disk and copy the filesystems in
	local disksize
	disksize=$(jq '.virtual_size' "$work/imgfab.json")
	truncate -s "$disksize" "$r/disk.raw"
	sgdisk -q -n "1:2048:+$((espsize / 1024))K" -t 1:ef00 -n "2:0:+$((rootsize / 1024))K" -t 2:8304 "$r/disk.raw"
	dd if="$r/esp.img" of="$r/disk.raw" bs=1M seek=1 conv=sparse,notrunc status=none
	dd if="$r/root.img" of="$r/disk.raw" bs=1M seek=$((1 + espsize / 1048576)) conv=sparse,notrunc status=none
	# 5. convert
	qemu-img convert -O qcow2 "$r/disk.raw" "$r/disk.qcow2"
}

echo "bench: Debian 12 fixture $oci ($(du -sh "$here/cache/debian/layer1" | cut -f1) unpacked), $runs runs each, $(nproc) cores"
best_i=999999; best_s=999999; rss=0
run_imgfab # warm the page cache once, and give the standard pipeline its sizes
for i in $(seq "$runs"); do
	sync; t0=$(now); run_imgfab; t1=$(now)
	ti=$(echo "$t1 - $t0" | bc); r=$(cat "$work/rss")
	[ "$r" -gt "$rss" ] && rss=$r
	sync; t0=$(now); run_standard; t1=$(now)
	ts=$(echo "$t1 - $t0" | bc)
	printf 'run %d: imgfab %.2fs (peak RSS %d MiB), standard pipeline %.2fs\n' "$i" "$ti" "$((r / 1024))" "$ts"
	best_i=$(echo "if ($ti < $best_i) $ti else $best_i" | bc); best_s=$(echo "if ($ts < $best_s) $ts else $best_s" | bc)
done
printf '\nbest of %d: imgfab %.2fs, standard pipeline %.2fs, ratio %.2f; imgfab peak RSS %d MiB\n' \
	"$runs" "$best_i" "$best_s" "$(echo "$best_i / $best_s" | bc -l)" "$((rss / 1024))"
printf 'outputs: imgfab.qcow2 %s MiB, standard disk.qcow2 %s MiB\n' \
	"$(($(stat -c %s "$work/imgfab.qcow2") >> 20))" "$(($(stat -c %s "$work/std/disk.qcow2") >> 20))"
