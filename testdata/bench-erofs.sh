#!/usr/bin/env bash
# bench-erofs.sh — part of `make bench` (issue 15): imgfab's EROFS writer (rootfs/erofs, through
# testdata/erofstar, streaming the Debian fixture's tree from its tar) against mkfs.erofs on the same
# tree unpacked (erofs-utils, uncompressed, the same 4 KiB blocks), best of BENCH_RUNS in the same
# run; both outputs synced. Then the dm-verity hash tree of that image: package verity (through
# testdata/veritytree) against `veritysetup format` (cryptsetup-bin), same salt, both synced, and
# the two root hashes must agree. Prints the times, the ratios and the sizes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
runs=${BENCH_RUNS:-3}
command -v mkfs.erofs >/dev/null || { echo "bench-erofs: mkfs.erofs not installed (apt-get install erofs-utils)" >&2; exit 1; }
command -v veritysetup >/dev/null || { echo "bench-erofs: veritysetup not installed (apt-get install cryptsetup-bin)" >&2; exit 1; }
bash "$here/mkdebian.sh" >/dev/null
tree=$here/cache/debian/layer1
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench-erofs.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/erofstar" ./testdata/erofstar && go build -o "$work/veritytree" ./testdata/veritytree)
best() { # best CMD...: the best wall time of $runs runs
	local b=999999 t0 t1 d
	for _ in $(seq "$runs"); do
		rm -f "$work/out.erofs" "$work/hash"
		sync
		t0=$(date +%s.%N)
		"$@" >"$work/stdout" 2>&1
		sync "$work"/out.erofs "$work"/hash 2>/dev/null || true
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

# The verity tree over our image (kept aside as data.erofs).
"$work/erofstar" "$here/cache/debian/rootfs.tar" "$work/data.erofs"
ours=$(best "$work/veritytree" "$work/data.erofs" "$work/hash")
ours_root=$(cat "$work/stdout")
theirs=$(best veritysetup format "$work/data.erofs" "$work/hash" --salt="$(printf imgfab | od -An -tx1 | tr -d ' \n')")
theirs_root=$(sed -n 's/^Root hash:[[:space:]]*//p' "$work/stdout")
[ "$ours_root" = "$theirs_root" ] || { echo "bench-erofs: root hashes differ: ours $ours_root, veritysetup $theirs_root" >&2; exit 1; }
printf 'verity: imgfab %.2fs vs veritysetup format %.2fs, ratio %.2f (best of %d; %d MiB of data, same root hash)\n' \
	"$ours" "$theirs" "$(echo "$ours / $theirs" | bc -l)" "$runs" "$(($(stat -c %s "$work/data.erofs") >> 20))"
