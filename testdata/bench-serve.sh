#!/usr/bin/env bash
# bench-serve.sh — part of `make bench` (issue 16): a bounded load test of `imgfab serve` on
# loopback. The reference registry (distribution, `make servers`) is the store; the demo image is
# pushed to it (skopeo) as the class's base; one replica builds a class's qcow2 and raw.zst once, then
# BENCH_CLIENTS (32) clients download them (cache hits: every byte checked against its sha256) for
# BENCH_SERVE_SECONDS (120). Prints throughput, p50/p99 latency of whole downloads and the
# replica's peak RSS (VmHWM), which must stay under 512 MiB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
secs=${BENCH_SERVE_SECONDS:-120}
clients=${BENCH_CLIENTS:-32}
reg_bin=${IMGFAB_REGISTRY_BIN:-$HOME/.cache/imgfab-bin/registry}
[ -x "$reg_bin" ] || { echo "bench-serve: no registry at $reg_bin: run make servers" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "bench-serve: skopeo not installed" >&2; exit 1; }
bash "$here/mkdemo.sh" >/dev/null
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfab-bench-serve.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$work/imgfab" ./cmd/imgfab && go build -o "$work/serveload" ./testdata/serveload)

rp=$(port)
cat >"$work/registry.yml" <<EOR
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$rp}
EOR
OTEL_TRACES_EXPORTER=none "$reg_bin" serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$rp/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$here/cache/demo/oci:demo" "docker://127.0.0.1:$rp/base/demo:1"

sp=$(port)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
"$work/imgfab" serve --store "127.0.0.1:$rp/imgfab/factory" --insecure --listen "127.0.0.1:$sp" \
	--cache "$work/cache" --token-file "$work/token" 2>"$work/serve.log" &
spid=$!
pids+=($spid)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$sp/readyz" >/dev/null && break; sleep 0.1; done
id=$(printf 'from: 127.0.0.1:%s/base/demo:1\nkernel: {cmdline: console=ttyS0}\n' "$rp" |
	curl -fsS -H "Authorization: Bearer $(cat "$work/token")" --data-binary @- "http://127.0.0.1:$sp/classes" | jq -r .id)
args=()
for f in disk.qcow2 disk.raw.zst; do
	url="http://127.0.0.1:$sp/images/$id/amd64/$f"
	t0=$(date +%s.%N)
	sum=$(curl -fsS "$url" | sha256sum | cut -d' ' -f1)
	t1=$(date +%s.%N)
	size=$(curl -fsSI "$url" | tr -d '\r' | awk 'tolower($1)=="content-length:"{print $2}')
	printf 'serve: first request of %s (build + store): %.2f s, %d MiB\n' "$f" "$(echo "$t1 - $t0" | bc)" $((size >> 20))
	args+=("$url=$sum")
done
res=$("$work/serveload" -clients "$clients" -duration "${secs}s" "${args[@]}")
hwm=$(awk '/VmHWM/{print $2}' "/proc/$spid/status")
echo "$res" | jq -r --arg hwm "$hwm" '"serve: \(.clients) clients, \(.seconds|floor) s of cache hits: \(.requests) downloads, \(.requests_per_s*10|floor/10) req/s, \(.mib_per_s|floor) MiB/s; latency p50 \(.p50_ms*10|floor/10) ms, p99 \(.p99_ms*10|floor/10) ms, max \(.max_ms|floor) ms; errors \(.errors); replica peak RSS \(($hwm|tonumber)/1024|floor) MiB"'
[ "$hwm" -lt $((512 * 1024)) ] || { echo "bench-serve: peak RSS ${hwm} KiB is over 512 MiB" >&2; exit 1; }
