#!/usr/bin/env bash
# bench-formats.sh — per output format: imgfab's writer against the usual tool on the same raw disk,
# in the same run (part of `make bench`). Prints every command, then a table: wall time of each
# (best of BENCH_RUNS), the time ratio imgfab/other (≤ 1.00: imgfab is as fast or faster), and both
# output sizes. Rows where both sides take under 2 s get at least BENCH_RUNS_SHORT (10) runs.
#
#   bash testdata/bench-formats.sh [DISK.raw]
#   BENCH_ONLY=vmdk,vhd bash testdata/bench-formats.sh [DISK.raw]   # only these rows
#
# Without an argument the raw disk is the Debian 12 fixture image (testdata/mkdebian.sh, needs root
# the first time) built with `imgfab build ... -o X.raw`. raw.xz takes minutes on both sides. imgfab's writer is `imgfab convert IN OUT`
# when the binary has that command, else testdata/writefmt (diskfmt called directly). Formats that
# are not registered yet are skipped, with a line saying so. The other side is `qemu-img convert`
# (qcow2, VMDK streamOptimized, VHD fixed and dynamic), GNU tar + gzip for GCE (Google's documented
# `tar --format=oldgnu -Sczf`), and the zstd, xz and gzip command-line tools at their default
# levels for raw.zst, raw.xz and raw.gz.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${IMGFAB:-$repo/imgfab}
runs=${BENCH_RUNS:-3}
export GOFLAGS=${GOFLAGS:--mod=readonly}
for t in qemu-img zstd xz gzip tar bc; do
	command -v "$t" >/dev/null || { echo "bench-formats: $t not installed" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench-formats.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000

(cd "$repo" && go build -o "$work/writefmt" ./testdata/writefmt)
[ -x "$bin" ] || (cd "$repo" && make -s build)
if [ $# -ge 1 ]; then
	in=$1
else
	oci=$(bash "$here/mkdebian.sh")
	in=$work/debian.raw
	"$bin" build "oci:$oci:debian" --cmdline console=ttyS0 -o "$in" >/dev/null
fi
if "$bin" convert --help >/dev/null 2>&1; then
	writer="$bin convert"
	conv() { "$bin" convert "$@"; } # IN OUT [flags]
else
	writer="testdata/writefmt"
	conv() { local i=$1 o=$2; shift 2; "$work/writefmt" "$@" "$i" "$o"; }
fi
names=$("$work/writefmt" -names)
size() { stat -c %s "$1"; }
now() { date +%s.%N; }

echo "bench-formats: input $in ($(($(size "$in") >> 20)) MiB virtual, $(du -m "$in" | cut -f1) MiB allocated)," \
	"$(nproc) cores, best of $runs; imgfab side: $writer"
rows=()

# bench LABEL FORMAT OUT-EXT "IMGFAB FLAGS" OTHER-COMMAND (run by bash -c with $IN and $OUT set)
bench() {
	local label=$1 format=$2 ext=$3 flags=$4 other=$5
	if [ -n "${BENCH_ONLY:-}" ] && ! grep -qxF "$label" <<<"$(tr ',' '\n' <<<"$BENCH_ONLY")"; then
		return
	fi
	if ! grep -qx "$format" <<<"$names"; then
		echo "skip $label: format $format not registered yet"
		return
	fi
	local ours="$work/ours$ext" theirs="$work/theirs$ext" bi=999999 bt=999999 t0 t1 t
	echo "$label:"
	echo "  imgfab: $writer $in $ours $flags"
	echo "  other:  IN=$in OUT=$theirs; $other"
	local n=$runs i=0
	while [ $i -lt $n ]; do
		i=$((i + 1))
		rm -f "$ours" "$theirs"
		# shellcheck disable=SC2086 # flags are words
		# A global sync first: neither side pays for the writeback of what ran before it.
		sync
		t0=$(now); conv "$in" "$ours" $flags >/dev/null; t1=$(now)
		t=$(echo "$t1 - $t0" | bc); bi=$(echo "if ($t < $bi) $t else $bi" | bc)
		# imgfab fsyncs its output before renaming it into place; the other side gets the same
		# sync so both times are to durable output.
		sync
		t0=$(now); IN=$in OUT=$theirs bash -c "$other"; sync "$theirs"; t1=$(now)
		t=$(echo "$t1 - $t0" | bc); bt=$(echo "if ($t < $bt) $t else $bt" | bc)
		# Sub-2-second rows are bound by page-cache writeback and vary by ±30 % from run to run:
		# they get at least BENCH_RUNS_SHORT (10) runs, which costs little.
		if [ $i -eq 1 ] && [ "$(echo "$bi < 2 && $bt < 2" | bc)" = 1 ]; then
			n=$((runs > ${BENCH_RUNS_SHORT:-10} ? runs : ${BENCH_RUNS_SHORT:-10}))
		fi
	done
	rows+=("$(printf '| %-13s | %7.2f s | %7.2f s | %5.2f | %9.1f MiB | %9.1f MiB |' "$label" "$bi" "$bt" \
		"$(echo "$bi / $bt" | bc -l)" "$(echo "$(size "$ours") / 1048576" | bc -l)" \
		"$(echo "$(size "$theirs") / 1048576" | bc -l)")")
	echo "${rows[-1]}"
	rm -f "$ours" "$theirs"
}

bench "qcow2"         qcow2       .qcow2  "--format qcow2"                   'qemu-img convert -f raw -O qcow2 "$IN" "$OUT"'
bench "qcow2 deflate" qcow2       .qcow2  "--format qcow2 --compress deflate" 'qemu-img convert -c -f raw -O qcow2 "$IN" "$OUT"'
bench "qcow2 zstd"    qcow2       .qcow2  "--format qcow2 --compress zstd"    'qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd "$IN" "$OUT"'
bench "vmdk"          vmdk        .vmdk   "--format vmdk"                    'qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$IN" "$OUT"'
bench "vhd"           vhd         .vhd    "--format vhd"                     'qemu-img convert -f raw -O vpc -o subformat=fixed "$IN" "$OUT"'
bench "vhd-dynamic"   vhd-dynamic .vhd    "--format vhd-dynamic"             'qemu-img convert -f raw -O vpc "$IN" "$OUT"'
bench "gce"           gce         .tar.gz "--format gce"                     'd=$(dirname "$OUT")/gce && mkdir -p "$d" && cp --sparse=always "$IN" "$d/disk.raw" && truncate -s %1G "$d/disk.raw" && tar --format=oldgnu -Sczf "$OUT" -C "$d" disk.raw && rm -rf "$d"'
bench "raw.zst"       raw.zst     .raw.zst "--format raw.zst"                'zstd -q -c "$IN" >"$OUT"'
if [ -n "${BENCH_XZ:-}" ]; then # minutes on both sides
	bench "raw.xz"        raw.xz      .raw.xz  "--format raw.xz"                 'xz -c "$IN" >"$OUT"'
else
	echo "skip raw.xz: takes many minutes on both sides; BENCH_XZ=1 to include it"
fi
bench "raw.gz"        raw.gz      .raw.gz  "--format raw.gz"                 'gzip -c "$IN" >"$OUT"'

echo
echo "| format        |   imgfab  |   other   | ratio |   imgfab size |    other size |"
echo "|---------------|-----------|-----------|-------|---------------|---------------|"
printf '%s\n' "${rows[@]}"
