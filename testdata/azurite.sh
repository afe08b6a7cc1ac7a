#!/usr/bin/env bash
# azurite.sh: install Azurite (npm) into a cache dir if missing, then optionally start azurite-blob.
#
#   testdata/azurite.sh install          # prints the path of azurite-blob
#   testdata/azurite.sh start PORT DIR   # starts azurite-blob on 127.0.0.1:PORT (foreground)
#
# The cache dir is $IMGFAB_AZURITE_DIR or $HOME/.cache/imgfab/azurite. Tests find the binary via
# $AZURITE_BLOB (set by .ci/run from `azurite.sh install`) or at the cache path.
set -euo pipefail
dir=${IMGFAB_AZURITE_DIR:-$HOME/.cache/imgfab/azurite}
version=3.37.0
bin=$dir/node_modules/.bin/azurite-blob
install() {
	if [ ! -x "$bin" ]; then
		mkdir -p "$dir"
		(cd "$dir" && npm install --no-audit --no-fund --silent "azurite@$version" >&2)
	fi
	echo "$bin"
}
case "${1:-install}" in
install) install ;;
start)
	port=${2:?PORT}; loc=${3:?DIR}
	install >/dev/null
	exec "$bin" --blobHost 127.0.0.1 --blobPort "$port" --location "$loc" \
		--skipApiVersionCheck --disableTelemetry --silent
	;;
*) echo "usage: $0 install | start PORT DIR" >&2; exit 2 ;;
esac
