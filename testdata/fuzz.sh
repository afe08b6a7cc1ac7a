#!/usr/bin/env bash
# fuzz.sh: run every go-fuzz target for FUZZTIME each (default 10m), one after another, then keep
# the corpus each one grew: new inputs are copied from Go's fuzz cache into the package's
# testdata/fuzz/TARGET (files over 256 KiB are left out), so `go test` replays them from then on.
#
#   FUZZTIME=10m FUZZPARALLEL=1 bash testdata/fuzz.sh [TARGET-REGEXP]
#
# FUZZKEEP=0 keeps nothing (a rerun that checks the code, not one that grows the corpus).
#
# The corpus this leaves is large (every input that reached new coverage in any run). Trim it after
# each run and commit the deletions (testdata/README.md, "Fuzz corpora"):
#
#   make fuzzmin        # bash testdata/fuzzmin.sh [TARGET-REGEXP]: keeps the regression inputs of
#                       # testdata/fuzzmin.keep and the fewest bytes that cover the same blocks
#   git commit -m 'fuzz corpora: minimized' -- '*/testdata/fuzz/*'
set -euo pipefail
cd "$(dirname "$0")/.."
time=${FUZZTIME:-10m}
par=${FUZZPARALLEL:-$(nproc)}
only=${1:-.}
cache=$(go env GOCACHE)/fuzz
module=$(go list -m)
status=0
for pkg in ./layers ./rootfs/ext4 ./diskfmt ./inspect ./inspect/initrd ./internal/deflate; do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "$target" | grep -Eq "$only" || continue
		echo "== $pkg $target for $time (parallel $par)"
		if ! go test -run '^$' -fuzz "^$target\$" -fuzztime "$time" -fuzzminimizetime 10s -parallel "$par" "$pkg"; then
			echo "!! $pkg $target FAILED (the failing input is in $pkg/testdata/fuzz/$target)"
			status=1
		fi
		[ "${FUZZKEEP:-1}" = 0 ] && continue
		src=$cache/$module/${pkg#./}/$target
		dst=$pkg/testdata/fuzz/$target
		if [ -d "$src" ]; then
			mkdir -p "$dst"
			n=0
			for f in "$src"/*; do
				[ -f "$f" ] || continue
				[ "$(stat -c %s "$f")" -le 262144 ] || continue
				[ -e "$dst/$(basename "$f")" ] || { cp "$f" "$dst/"; n=$((n + 1)); }
			done
			echo "   kept $n new corpus entries in $dst ($(ls "$dst" | wc -l) in all)"
		fi
	done
done
exit $status
