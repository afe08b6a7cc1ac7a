#!/usr/bin/env bash
# bench-scale.sh — imgfab at scale (part of `make bench`): peak RSS and wall time of `imgfab build`
# for big synthetic images, each built to a qcow2 (first: written in place while the layers stream)
# and a raw (made from it) in one run:
#
#   sparse-16g  --size 20GiB, one sparse 16 GiB file (4 MiB of data at each end, zeros between)
#   dir-200k    one directory of 200,000 entries (small files, every 10th a symlink)
#   big-1g/2g/4g  one file of 1, 2 and 4 GiB of non-zero data (time must grow linearly)
#   layers-500  500 layers, each adding and overwriting files, with whiteouts and opaque dirs
#
# The images are OCI layouts of uncompressed layers made by testdata/genlayer (streamed, holes for
# zero runs), cached under testdata/cache/scale/ (about 7 GiB of blobs) and reused while genlayer
# and its arguments are unchanged. Outputs go to a scratch directory (TMPDIR, default /var/tmp; up
# to 2 × 4 GiB at once) removed at the end. Budget: peak RSS ≤ 256 MiB in every case; the script
# exits 1 when a case goes over it.
#
#   bash testdata/bench-scale.sh [CASE...]      # default: all cases
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=$here/cache/scale
budget_kib=$((256 * 1024))
export GOFLAGS=${GOFLAGS:--mod=readonly}
export SOURCE_DATE_EPOCH=1700000000
for t in /usr/bin/time bc jq; do
	command -v "$t" >/dev/null || { echo "bench-scale: $t not installed (apt-get install time bc jq)" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"
(cd "$repo" && go build -o "$work/genlayer" ./testdata/genlayer)
bin=${IMGFAB:-}
if [ -z "$bin" ]; then # the working tree's imgfab, as `make build` makes it
	bin=$work/imgfab
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/imgfab)
fi
gensum=$(sha256sum "$here/genlayer/main.go" | cut -c1-16)

# gen NAME GENLAYER-ARGS...: the layout $cache/NAME, made unless cached with the same arguments.
gen() {
	local name=$1
	shift
	local dir=$cache/$name stamp="$gensum $*"
	if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp" ]; then
		return
	fi
	rm -rf "$dir" "$dir.tmp"
	local t0=$SECONDS
	"$work/genlayer" -o "$dir.tmp" -tag scale "$@"
	echo "$stamp" >"$dir.tmp/stamp"
	mv "$dir.tmp" "$dir"
	echo "  generated $name in $((SECONDS - t0)) s ($(du -sm "$dir" | cut -f1) MiB on disk)" >&2
}

rows=()
over=0
# bench NAME LABEL CONTENT UNIT UNIT-NAME [BUILD FLAGS...]: one build to qcow2 + raw; time per
# unit = wall × UNIT / CONTENT (CONTENT in bytes, entries or layers).
bench() {
	local name=$1 label=$2 content=$3 unit=$4 uname=$5
	shift 5
	local out=$work/$name
	# This VM's root is ext4 mounted with discard: the blocks of the previous case's outputs are
	# discarded after their removal, and that I/O lands in the next build's sys time (measured: the
	# same 1 GiB build 3.0 s or 5.5 s). Let it finish first.
	sync
	sleep 3
	sync
	/usr/bin/time -f '%M %e %U %S' -o "$work/time" "$bin" build --json "oci:$cache/$name:scale" "$@" \
		-o "$out.qcow2" -o "$out.raw" >"$work/$name.json"
	local rss wall user sys
	read -r rss wall user sys <"$work/time"
	local files dirs data raw_alloc qcow_bytes vsize
	files=$(jq .rootfs.files "$work/$name.json")
	dirs=$(jq .rootfs.dirs "$work/$name.json")
	data=$(jq .rootfs.data_bytes "$work/$name.json")
	vsize=$(jq .virtual_size "$work/$name.json")
	raw_alloc=$(du -m "$out.raw" | cut -f1)
	qcow_bytes=$(($(stat -c %s "$out.qcow2") >> 20))
	rm -f "$out.raw" "$out.qcow2"
	local per
	per=$(echo "scale=2; $wall * $unit / $content" | bc)
	local flag=""
	if [ "$rss" -gt "$budget_kib" ]; then
		flag=" OVER BUDGET"
		over=1
	fi
	rows+=("$(printf '| %s | %s | %d | %d | %d MiB | %.1f s | %.1f s | %s s/%s | %d MiB%s | %d MiB | %d MiB |' \
		"$name" "$label" "$files" "$dirs" "$((data >> 20))" "$wall" \
		"$(echo "$user + $sys" | bc)" "$per" "$uname" "$((rss / 1024))" "$flag" "$raw_alloc" "$qcow_bytes")")
	echo "  $name: peak RSS $((rss / 1024)) MiB, ${wall} s wall (${user} user ${sys} sys), $per s/$uname, disk $((vsize >> 20)) MiB" >&2
}

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(sparse-16g dir-200k big-1g big-2g big-4g layers-500)
echo "bench-scale: $(nproc) cores, $(($(grep MemTotal /proc/meminfo | awk '{print $2}') >> 20)) GiB RAM, imgfab $("$bin" version | head -1), cache $cache" >&2
for c in "${cases[@]}"; do
	case $c in
	sparse-16g)
		gen "$c" -size $((16 << 30)) sparse
		bench "$c" "16 GiB sparse file" $((16 << 30)) $((1 << 30)) GiB --size 20GiB
		;;
	dir-200k)
		gen "$c" -n 200000 dir
		bench "$c" "200,000 entries" 200000 100000 100k-entries
		;;
	big-[0-9]g)
		g=${c#big-}
		g=${g%g}
		gen "$c" -size $((g << 30)) big
		bench "$c" "$g GiB file" $((g << 30)) $((1 << 30)) GiB
		;;
	layers-500)
		gen "$c" -n 500 layers
		bench "$c" "500 layers" 500 100 100-layers
		;;
	*)
		echo "bench-scale: unknown case $c" >&2
		exit 2
		;;
	esac
done

echo
echo "| case | content | files | dirs | file bytes in fs | wall | cpu | time per unit | peak RSS | raw allocated | qcow2 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "time per unit: wall time per GiB of file content (apparent size: the sparse file counts 16 GiB),"
echo "per 100,000 entries or per 100 layers. file bytes in fs: apparent size of the files in the ext4 root;"
echo "zero blocks become holes, so raw allocated and qcow2 show what is really stored."
if [ "$over" = 1 ]; then
	echo "bench-scale: peak RSS over the 256 MiB budget" >&2
	exit 1
fi
