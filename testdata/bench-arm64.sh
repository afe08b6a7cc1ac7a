#!/bin/bash
# bench-arm64.sh — `make bench`: an arm64 build against the x86-64 build of the same system, in the
# same run (issue 14): the Debian 12 fixtures testdata/mkdebian.sh (amd64) and
# testdata/mkdebian-arm64.sh (arm64: the same packages and layers), each built to qcow2 on this
# machine, best of 3. imgfab runs nothing of the image, so an arm64 build needs no emulation and
# should take the time of its bytes. Prints each best time, the content sizes and the ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${IMGFAB:-$repo/imgfab}
runs=${RUNS:-3}
amd=$here/cache/debian/oci
arm=$here/cache/debian-arm64/oci
for d in "$amd" "$arm"; do
	[ -f "$d/index.json" ] || { echo "bench-arm64: $d missing (make debian-fixture)" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench-arm64.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

best() { # best wall time of $runs builds of $1 (an OCI layout); the JSON of the last in $work/$2.json
	local b=999999 t0 t1 t
	for _ in $(seq 1 "$runs"); do
		rm -f "$work/$2.qcow2"
		sync; t0=$(now)
		SOURCE_DATE_EPOCH=1700000000 "$bin" build --json "oci:$1:debian" --cmdline console=ttyS0 -o "$work/$2.qcow2" >"$work/$2.json"
		t1=$(now)
		t=$(echo "$t1 - $t0" | bc)
		b=$(echo "if ($t < $b) $t else $b" | bc)
	done
	echo "$b"
}

"$bin" build "oci:$amd:debian" -o "$work/warm.raw" >/dev/null 2>&1 || true
"$bin" build "oci:$arm:debian" -o "$work/warm.raw" >/dev/null 2>&1 || true
rm -f "$work/warm.raw"
ta=$(best "$amd" amd64)
tr=$(best "$arm" arm64)
for a in amd64 arm64; do
	printf '%s: %s, root data %d MiB in %d files, disk %d MiB\n' "$a" "$(jq -r '.partitions[1].name' "$work/$a.json")" \
		"$(($(jq '.rootfs.data_bytes' "$work/$a.json") >> 20))" "$(jq '.rootfs.files' "$work/$a.json")" "$(($(jq '.virtual_size' "$work/$a.json") >> 20))"
done
printf 'best of %d: amd64 %.2fs, arm64 %.2fs, arm64/amd64 %.2f (%d cores; no emulation: nothing of the image runs)\n' \
	"$runs" "$ta" "$tr" "$(echo "$tr / $ta" | bc -l)" "$(nproc)"
