#!/usr/bin/env bash
# bench-classes.sh — `make bench`: one class file of 3 classes × 3 formats (the Debian fixture, a
# kernel command line each) against the 3 separate `imgfab build` runs a user would script, in
# the same run; then the same file rebuilt unchanged (outputs copied from the cache). Prints wall
# times, the ratio, and peak RSS (GNU time). imgfab runs unprivileged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${IMGFAB:-$repo/imgfab}
runs=${BENCH_RUNS:-3}
command -v /usr/bin/time >/dev/null || { echo "bench-classes: GNU time not installed (apt-get install time)" >&2; exit 1; }
oci=$(bash "$here/mkdebian.sh")
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench-classes.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000
classes="web worker bastion"

{
	echo "classes:"
	for c in $classes; do
		printf '  %s:\n    from: oci:%s:debian\n    kernel: {cmdline: "console=ttyS0 imgfab.class=%s"}\n' "$c" "$oci" "$c"
		printf '    outputs: [{path: "out/{class}.qcow2"}, {path: "out/{class}.vmdk"}, {path: "out/{class}.vhd"}]\n'
	done
} >"$work/imgfab.yaml"

now() { date +%s.%N; }
echo 0 >"$work/maxrss"
timed() { # timed CMD…: runs it under GNU time (failing as it fails), keeps the largest peak RSS (KiB)
	/usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null || { echo "bench-classes: failed: $*" >&2; exit 1; }
	local r; r=$(tail -1 "$work/rss")
	[ "$r" -gt "$(cat "$work/maxrss")" ] && echo "$r" >"$work/maxrss"
	return 0
}

file_run() { rm -rf "$work/out" "$work/cache"; timed "$bin" build -f "$work/imgfab.yaml" --cache "$work/cache"; }
separate_run() {
	rm -rf "$work/sep" && mkdir -p "$work/sep"
	for c in $classes; do
		timed "$bin" build "oci:$oci:debian" --cmdline "console=ttyS0 imgfab.class=$c" \
			-o "$work/sep/$c.qcow2" -o "$work/sep/$c.vmdk" -o "$work/sep/$c.vhd"
	done
}
cached_run() { timed "$bin" build -f "$work/imgfab.yaml" --cache "$work/cache"; }

best() { # best FN: the fastest of $runs runs, in seconds
	local b="" t0 t1 d
	for _ in $(seq "$runs"); do
		t0=$(now); "$1"; t1=$(now)
		d=$(echo "$t1 - $t0" | bc)
		if [ -z "$b" ] || [ "$(echo "$d < $b" | bc)" = 1 ]; then b=$d; fi
	done
	echo "$b"
}

f=$(best file_run)
s=$(best separate_run)
for c in $classes; do # the file builds what the separate runs build
	for x in qcow2 vmdk vhd; do
		cmp -s "$work/out/$c.$x" "$work/sep/$c.$x" || { echo "bench-classes: $c.$x differs between the file and the separate build" >&2; exit 1; }
	done
done
k=$(best cached_run)
printf 'classes: 3 classes x 3 formats (qcow2, vmdk, vhd) of the Debian fixture, best of %d\n' "$runs"
printf '  imgfab build -f (one file)     %6.2f s\n' "$f"
printf '  3 separate imgfab build runs   %6.2f s   (file / separate = %.2f)\n' "$s" "$(echo "$f / $s" | bc -l)"
printf '  rebuild unchanged (cached)     %6.2f s   (cached / file = %.3f)\n' "$k" "$(echo "$k / $f" | bc -l)"
printf '  peak RSS of any run            %6d MiB\n' "$(($(cat "$work/maxrss") / 1024))"
