#!/usr/bin/env bash
# bench-erofs.sh — part of `make bench` (issue 15): imgfab's EROFS writer (rootfs/erofs, through
# testdata/erofstar, streaming the Debian fixture's tree from its tar) against mkfs.erofs on the same
# tree unpacked (erofs-utils, uncompressed, the same 4 KiB blocks), best of BENCH_RUNS in the same
# run; both outputs synced. Prints both times, the ratio and the image sizes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
runs=${BENCH_RUNS:-3}
command -v mkfs.erofs >/dev/null || { echo "bench-erofs: mkfs.erofs not installed (apt-get install erofs-utils)" >&2; exit 1; }
bash "$here/mkdebian.sh" >/dev/null
tree=$here/cache/debian/layer1
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench-erofs.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/erofstar" ./testdata/erofstar)
best() { # best CMD...: the best wall time of $runs runs
	local b=999999 t0 t1 d
	for _ in $(seq "$runs"); do
		rm -f "$work/out.erofs"
		sync
		t0=$(date +%s.%N)
		"$@" >/dev/null 2>&1
		sync "$work/out.erofs"
		t1=$(date +%s.%N)
		d=$(echo "$t1 - $t0" | bc)
		if [ "$(echo "$d < $b" | bc)" = 1 ]; then b=$d; fi
	done
	echo "$b"
}
ours=$(best "$work/erofstar" "$here/cache/debian/rootfs.tar" "$work/out.erofs")
ours_size=$(stat -c %s "$work/out.erofs")
theirs=$(best mkfs.erofs -T 1700000000 "$work/out.erofs" "$tree")
theirs_size=$(stat -c %s "$work/out.erofs")
printf 'erofs: imgfab %.2fs (%d MiB) vs mkfs.erofs %.2fs (%d MiB), ratio %.2f (best of %d)\n' \
	"$ours" "$((ours_size >> 20))" "$theirs" "$((theirs_size >> 20))" "$(echo "$ours / $theirs" | bc -l)" "$runs"
