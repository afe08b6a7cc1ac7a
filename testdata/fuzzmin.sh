#!/usr/bin/env bash
# fuzzmin.sh: trim every fuzz corpus (PKG/testdata/fuzz/TARGET) to the inputs that found something
# and the fewest bytes of others that reach the same coverage of the package as the whole corpus.
# Run it after `make fuzz` (`make fuzzmin`), then commit the deletions:
#
#   FUZZMIN_PAR=2 bash testdata/fuzzmin.sh [TARGET-REGEXP]
#   git commit -m 'fuzz corpora: minimized' -- '*/testdata/fuzz/*'
#
# Per package, the test binary is built once with coverage of the package (go test -c -cover
# -coverpkg=./PKG); testdata/fuzzmin (Go) then runs each input alone with it, keeps the inputs of
# testdata/fuzzmin.keep (regressions, seeds tests read), those a commit message or _test.go names and
# those that fail, adds a greedy cover of the rest, and checks that the whole target covers the same
# blocks with the kept inputs as with all of them. Only then are the others removed (git rm, or rm
# for files git does not track). It prints, per target: files, bytes, coverage and blocks, before
# and after.
#
# FUZZMIN_DRY=1 removes nothing (the paths it would remove are printed, or listed in
# $FUZZMIN_WORK/drop). FUZZMIN_WORK=DIR keeps the per-input coverage there (a rerun on the same code
# and inputs is then quick). About 10 minutes on 2 cores for ~1,900 inputs (FuzzInspect builds its
# disk with sgdisk/mkfs.vfat/mke2fs in every process: ~1.5 s an input).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--mod=readonly}
only=${1:-.}
par=${FUZZMIN_PAR:-2}
if [ -n "${FUZZMIN_WORK:-}" ]; then
	work=$FUZZMIN_WORK
	mkdir -p "$work"
else
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
fi
: >"$work/drop"
: >"$work/summary"
go build -o "$work/fuzzmin" ./testdata/fuzzmin
for pkg in ./layers ./rootfs/ext4 ./diskfmt ./inspect ./inspect/initrd ./internal/deflate; do
	bin=$work/$(echo "${pkg#./}" | tr / _).test
	built=0
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "$target" | grep -Eq "$only" || continue
		[ -d "$pkg/testdata/fuzz/$target" ] || continue
		if [ $built = 0 ]; then
			go test -c -cover -covermode=set -coverpkg="$pkg" -o "$bin" "$pkg"
			built=1
		fi
		echo "== $pkg $target"
		"$work/fuzzmin" -bin "$bin" -dir "$pkg" -target "$target" -keep testdata/fuzzmin.keep \
			-work "$work" -par "$par" -drop "$work/drop" | tee -a "$work/summary"
	done
done
echo
printf '%-34s %13s %21s %17s\n' target files bytes coverage
grep -E '^[^ ].* files ' "$work/summary" | while read -r pkg target _ f0 f1 _ b0 b1 _ c0 c1 _ k0 k1; do
	printf '%-34s %5s → %5s %9s → %9s %7s → %7s\n' "$pkg $target" "$f0" "$f1" "$b0" "$b1" "$c0" "$c1"
done
n=$(wc -l <"$work/drop")
if [ "${FUZZMIN_DRY:-0}" = 1 ]; then
	echo "FUZZMIN_DRY=1: would remove $n inputs (listed in $work/drop with FUZZMIN_WORK set)"
	[ -n "${FUZZMIN_WORK:-}" ] || cat "$work/drop"
	exit 0
fi
while read -r p; do
	if git ls-files --error-unmatch -- "$p" >/dev/null 2>&1; then
		git rm -q -- "$p"
	else
		rm -f -- "$p"
	fi
done <"$work/drop"
echo "removed $n inputs (git rm); commit them with: git commit -m 'fuzz corpora: minimized' -- '*/testdata/fuzz/*'"
