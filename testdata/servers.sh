#!/usr/bin/env bash
# servers.sh: install the local servers the publish tests start on loopback, cached per machine.
#
#   Azurite (npm) for Azure page blobs             → testdata/azurite.sh install
#   the distribution registry v3 (go install)      → $IMGFAB_BIN_DIR/registry
#
# IMGFAB_BIN_DIR defaults to $HOME/.cache/imgfab-bin. The Makefile points IMGFAB_REGISTRY_BIN at
# the registry binary. A cold `go install` of the registry takes about 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
bindir=${IMGFAB_BIN_DIR:-$HOME/.cache/imgfab-bin}
registry_version=v3.1.2
bash ./azurite.sh install >/dev/null
mkdir -p "$bindir"
stamp=$bindir/registry.version
if [ ! -x "$bindir/registry" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$registry_version" ]; then
	echo "servers: go install distribution registry $registry_version into $bindir" >&2
	(cd / && GOFLAGS= GOBIN="$bindir" go install "github.com/distribution/distribution/v3/cmd/registry@$registry_version")
	echo "$registry_version" >"$stamp"
fi
echo "$bindir/registry"
