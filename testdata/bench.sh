#!/usr/bin/env bash
# bench.sh — `make bench`: imgfab against the standard-tool pipeline a user would script today, on
# the debootstrapped Debian fixture (testdata/mkdebian.sh), in the same run, and the floor of any
# build (testdata/floor: the layers decompressed once, issue 17). Prints the wall times, the ratios,
# user+sys against wall (are both cores busy?) and imgfab's peak RSS; then one build with three
# outputs against the floor plus each writer alone. Needs root only for the standard pipeline's tar
# extraction (device nodes, ownership) — imgfab itself runs unprivileged.
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

# timed CMD...: runs CMD; "wall user sys maxrss_kib" in $work/times.
timed() {
	/usr/bin/time -f '%e %U %S %M' -o "$work/times" "$@"
}

# The floor of any build that must read its layers: decompress each layer once, discard the bytes.
run_floor() {
	local manifest blobs=()
	manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="debian") | .digest' "$oci/index.json")
	for l in $(jq -r '.layers[].digest' "$oci/blobs/sha256/${manifest#sha256:}"); do
		blobs+=("$oci/blobs/sha256/${l#sha256:}")
	done
	timed "$work/floor" "${blobs[@]}" >/dev/null
}

# run_imgfab FORMAT [FLAG...]: one build to raw or qcow2 (a plain build: no sha256 of the output).
run_imgfab() {
	local f=$1
	shift
	rm -f "$work/imgfab.$f"
	timed "$bin" build "$@" "oci:$oci:debian" --cmdline console=ttyS0 -o "$work/imgfab.$f" >/dev/null
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

(cd "$repo" && go build -o "$work/floor" ./testdata/floor)
echo "bench: Debian 12 fixture $oci ($(du -sh "$here/cache/debian/layer1" | cut -f1) unpacked), $runs runs each, $(nproc) cores"
# Warm the page cache once; the JSON result gives the standard pipeline its sizes.
"$bin" build --json "oci:$oci:debian" --cmdline console=ttyS0 -o "$work/imgfab.raw" >"$work/imgfab.json"
declare -A best=([floor]=999999 [raw]=999999 [qcow2]=999999 [raw+sha256]=999999 [qcow2+sha256]=999999 [std]=999999) cpu=()
rss=0
lt() { [ "$(echo "$1 < $2" | bc)" = 1 ]; }
# measure NAME CMD...: one timed run of CMD; keeps NAME's best wall time and its (user+sys)/wall.
measure() {
	local name=$1 wall user sys kib c
	shift
	sync
	"$@"
	read -r wall user sys kib <"$work/times"
	c=$(echo "($user + $sys) / $wall" | bc -l)
	if [ "$name" = floor ]; then
		printf ' floor %.2fs' "$wall"
	else
		[ "$kib" -gt "$rss" ] && rss=$kib
		printf ' | %s %.2fs (user+sys %.2f× wall)' "$name" "$wall" "$c"
	fi
	if lt "$wall" "${best[$name]}"; then best[$name]=$wall; cpu[$name]=$c; fi
}
for i in $(seq "$runs"); do
	printf 'run %d:' "$i"
	measure floor run_floor
	measure raw run_imgfab raw
	measure qcow2 run_imgfab qcow2
	measure raw+sha256 run_imgfab raw --checksum
	measure qcow2+sha256 run_imgfab qcow2 --checksum
	sync; t0=$(now); run_standard; t1=$(now)
	ts=$(echo "$t1 - $t0" | bc)
	printf ' | standard %.2fs\n' "$ts"
	if lt "$ts" "${best[std]}"; then best[std]=$ts; fi
done
f=${best[floor]}
printf '\nbest of %d: floor (the layers decompressed once) %.2fs\n' "$runs" "$f"
for o in raw qcow2 raw+sha256 qcow2+sha256; do
	printf '  imgfab to %-12s %.2fs = %.2f× the floor, user+sys %.2f× wall\n' "$o" "${best[$o]}" "$(echo "${best[$o]} / $f" | bc -l)" "${cpu[$o]}"
done
echo "  (+sha256: build --checksum, each output's sha256 computed too: a read-back of the disk written in place)"
printf '  standard pipeline to qcow2 %.2fs: imgfab/standard %.2f; imgfab peak RSS %d MiB\n' "${best[std]}" \
	"$(echo "${best[qcow2]} / ${best[std]}" | bc -l)" "$((rss / 1024))"
printf 'outputs: imgfab.qcow2 %s MiB, standard disk.qcow2 %s MiB\n' \
	"$(($(stat -c %s "$work/imgfab.qcow2") >> 20))" "$(($(stat -c %s "$work/std/disk.qcow2") >> 20))"

# Several outputs from one build (issue 17, "Done when" 2): written side by side (a plain build, not hashed),
# against the floor plus each writer's own time (imgfab convert from the raw).
best_of() { # best_of CMD...: the best wall time of $runs runs of CMD
	local b=999999 wall
	for _ in $(seq "$runs"); do
		rm -f "$work"/m.* "$work"/c.*
		sync
		timed "$@" >/dev/null
		read -r wall _ <"$work/times"
		if lt "$wall" "$b"; then b=$wall; fi
	done
	echo "$b"
}
multi=$(best_of "$bin" build "oci:$oci:debian" --cmdline console=ttyS0 -o "$work/m.qcow2" -o "$work/m.vmdk" -o "$work/m.vhd")
sum=$f
printf '\nseveral outputs: build -o qcow2 -o vmdk -o vhd %.2fs (best of %d); each writer alone (convert from the raw):' "$multi" "$runs"
for fmt in qcow2 vmdk vhd; do
	b=$(best_of "$bin" convert "$work/imgfab.raw" "$work/c.$fmt")
	printf ' %s %.2fs' "$fmt" "$b"
	sum=$(echo "$sum + $b" | bc -l)
done
printf '\n  floor + each writer %.2fs; the build takes %.2f of that\n' "$sum" "$(echo "$multi / $sum" | bc -l)"
