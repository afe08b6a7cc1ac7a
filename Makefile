# imgfab — see README.md. Every target works on a fresh Debian 12 machine after `bash .ci/run --deps`
# (or the apt-get line in the README).
GO      ?= go
export GOFLAGS ?= -mod=readonly
BIN     := ./imgfab
DEMO_OCI := testdata/cache/demo/oci
OVMF_CODE ?= /usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS ?= /usr/share/OVMF/OVMF_VARS_4M.fd
# Servers the publish tests start on loopback (installed by `make servers`, cached per machine).
export IMGFAB_REGISTRY_BIN ?= $(HOME)/.cache/imgfab-bin/registry

.PHONY: all build image demo demo-arm64 test-arm64 test test-short test-slow bench bench-publish fuzz fuzzmin fixtures debian-fixture servers vet clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/imgfab

# The OCI image of imgfab, built without Docker or root (deploy/mkimage): the static binary above,
# /etc/passwd and /etc/group for nonroot 65532, /tmp, this machine's CA certificates; reproducible
# (mtimes from SOURCE_DATE_EPOCH, else 0). Written as an OCI layout in imgfab-image/; push it with
# `skopeo copy oci:imgfab-image docker://REGISTRY/imgfab:TAG` (docs/serve.md).
image: build
	$(GO) run ./deploy/mkimage -binary $(BIN) -o imgfab-image -version "$$(git describe --tags --always --dirty 2>/dev/null || echo dev)"

$(DEMO_OCI)/index.json: testdata/mkdemo.sh
	bash testdata/mkdemo.sh

# The demo and its variants (BIOS GRUB modules; systemd stub only, for UKIs; arm64). Each script is
# idempotent and cached under testdata/cache.
fixtures: $(DEMO_OCI)/index.json
	sh testdata/mkdemo-bios.sh >/dev/null
	sh testdata/mkdemo-uki.sh >/dev/null
	sh testdata/mkdemo-arm64.sh >/dev/null

# The arm64 demo disk, built on any machine: the fixture comes from Debian 12's arm64 packages (no
# emulation; testdata/cache/demo-arm64/oci, tag demo), the disk from imgfab.
# testdata/checkdemo-arm64.sh boots the fixture under qemu-system-aarch64 + AAVMF without imgfab.
demo-arm64: build
	bash testdata/mkdemo-arm64.sh >/dev/null
	SOURCE_DATE_EPOCH=1700000000 $(BIN) build oci:testdata/cache/demo-arm64/oci:demo --cmdline "console=ttyAMA0" -o demo-arm64.qcow2
	@echo
	@echo "demo-arm64.qcow2 is ready (built here, no emulation). Boot it (UEFI, serial console; Ctrl-A X quits qemu):"
	@echo "  cp /usr/share/AAVMF/AAVMF_VARS.fd /tmp/demo-arm64-vars.fd"
	@echo "  qemu-system-aarch64 -M virt -cpu max -m 1024 -nographic -nic none \\"
	@echo "    -drive if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \\"
	@echo "    -drive if=pflash,format=raw,file=/tmp/demo-arm64-vars.fd \\"
	@echo "    -drive if=virtio,format=qcow2,file=demo-arm64.qcow2"

demo: build fixtures
	SOURCE_DATE_EPOCH=1700000000 $(BIN) build oci:$(DEMO_OCI):demo --cmdline "console=ttyS0" -o demo.qcow2
	@echo
	@echo "demo.qcow2 is ready. Boot it (UEFI, serial console; Ctrl-A X quits qemu):"
	@echo "  cp $(OVMF_VARS) /tmp/demo-vars.fd"
	@echo "  qemu-system-x86_64 -machine q35 -m 1024 -nographic -nic none \\"
	@echo "    -drive if=pflash,format=raw,readonly=on,file=$(OVMF_CODE) \\"
	@echo "    -drive if=pflash,format=raw,file=/tmp/demo-vars.fd \\"
	@echo "    -drive if=virtio,format=qcow2,file=demo.qcow2"

vet:
	$(GO) vet ./... ./testdata/mkoci ./testdata/setxattr ./testdata/writefmt ./testdata/genlayer ./testdata/hostile ./testdata/fuzzmin ./testdata/floor ./testdata/erofstar ./testdata/veritytree ./testdata/serveload

# The full suite: unit tests, oracles, the demo UEFI boot and the Debian 12 acceptance boots
# (debootstrap fixture, cached). About 10 minutes on 2 cores without KVM, plus ~2 minutes for the
# first debootstrap.
test: fixtures debian-fixture servers vet
	IMGFAB_SLOW=1 $(GO) test -timeout 60m ./... ./testdata/mkoci

# Local servers the publish tests start themselves: Azurite (npm, cached in ~/.cache/imgfab) and
# the distribution registry (go install, cached in ~/.cache/imgfab-bin).
servers:
	bash testdata/servers.sh >/dev/null

debian-fixture:
	bash testdata/mkdebian.sh >/dev/null
	sh testdata/mkdebian-sb.sh >/dev/null
	sh testdata/mkdebian-cloud.sh >/dev/null
	sh testdata/mkdebian-verity.sh >/dev/null

# The Debian 12 arm64 system (issue 14): its debootstrap second stage runs under qemu-user, about
# 45 minutes on 2 cores the first time, so it is not part of `make test` (CI's budget); this target
# makes it and boots it (TestArm64DebianBootsMultiUser).
test-arm64: build
	sh testdata/mkdebian-arm64.sh >/dev/null
	IMGFAB_ARM64_DEBIAN=1 $(GO) test -timeout 60m -run 'TestArm64' -v ./cmd/imgfab

# Quick: no qemu boot, no Debian fixture.
test-short:
	$(GO) test -short -timeout 20m ./... ./testdata/mkoci

# Only the Debian acceptance boots.
test-slow: fixtures debian-fixture
	IMGFAB_SLOW=1 $(GO) test -timeout 90m -run 'Debian' -v ./cmd/imgfab/

# imgfab vs the standard-tool pipeline; per-format writers vs qemu-img; scale (memory, linearity).
bench: build
	bash testdata/bench.sh
	bash testdata/bench-formats.sh
	bash testdata/bench-scale.sh
	bash testdata/bench-classes.sh
	bash testdata/bench-arm64.sh
	bash testdata/bench-erofs.sh
	bash testdata/bench-serve.sh
	$(MAKE) bench-publish

# Uploads to local servers (Azurite, in-process S3/EBS/GCS/registry fakes): zero blocks skipped,
# one stream against parallel workers, with and without a simulated round trip.
bench-publish: servers
	$(GO) test -run '^$$' -bench . -benchtime 3x ./publish/...

# Every fuzz target for FUZZTIME (default 10m) each; the corpus found is kept under testdata/fuzz.
FUZZTIME ?= 10m
fuzz:
	FUZZTIME=$(FUZZTIME) bash testdata/fuzz.sh

# Trims every fuzz corpus to its regression inputs (testdata/fuzzmin.keep) and the fewest bytes that
# cover the same blocks, checked before anything is removed (git rm). Run after `make fuzz`, then
# commit the deletions: git commit -m 'fuzz corpora: minimized' -- '*/testdata/fuzz/*'
fuzzmin:
	bash testdata/fuzzmin.sh

clean:
	rm -f $(BIN) demo.qcow2
