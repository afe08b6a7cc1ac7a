#!/bin/sh
# mkdemo-arm64.sh — the arm64 twin of the demo image (testdata/mkdemo.sh), made on any host from
# Debian 12's arm64 packages with no emulation: dpkg --add-architecture arm64, apt-get download
# PKG:arm64, dpkg-deb -x. Nothing arm64 is run. Needs root (device nodes, security.capability),
# apt-get, dpkg-deb, cpio, gzip, jq and the Go toolchain.
#
# The root is the x86-64 demo's (mkdemo.sh runs first): the same /sbin/init (prints IMGFAB-BOOT-OK),
# /etc/imgfab-test.sh, /opt/imgfab-fs, /etc files and device nodes, the same initramfs /init (finds
# root=PARTUUID= in the GPT itself); what is per architecture is replaced:
#   /boot/vmlinuz-<kver>   linux-image-<kver>:arm64's, a plain arm64 Image with an EFI stub (PE/COFF,
#                          machine 0xAA64), not compressed
#   /boot/initrd.img-<kver>  newc cpio, gzip: arm64 busybox-static + the arm64 modules the root needs
#                          (virtio_pci, virtio_mmio, virtio_blk, ext4 and their depends=; the virtio
#                          core and the generic PCI host are built in)
#   /bin/busybox           busybox-static:arm64 (the applet links are the x86 demo's: the two packages
#                          are built from one source version, checked, so their applet lists match)
#   /usr/lib/systemd/boot/efi/systemd-bootaa64.efi and linuxaa64.efi.stub  systemd-boot-efi:arm64
# The serial console of qemu's arm64 virt machine is ttyAMA0 (PL011): console=ttyAMA0.
#
# Outputs (under testdata/cache/demo-arm64/):
#   oci/       OCI image layout, tag "demo", epoch 1700000000; image config architecture arm64, os linux
#              (testdata/mkoci writes amd64: the config is rewritten after packing, see set_arm64), the
#              index.json descriptor carries platform linux/arm64
#   root/      the staged root tree that was packed (checkdemo-arm64.sh boots it without imgfab)
#   kver       the kernel version;  debs/  the downloaded arm64 .deb files;  initramfs/  the initramfs tree
# Idempotent: if oci/ exists and neither this script, mkdemo.sh, testdata/mkoci nor testdata/setxattr
# changed, prints the path and exits.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$here/cache/demo-arm64"
demo="$here/cache/demo"
epoch=1700000000
# Modules the initramfs loads (their depends= closure is added, dependencies first). virtio_mmio too:
# -M virt puts if=virtio disks on PCI, but virtio-blk-device sits on virtio-mmio.
want_modules="crc32c_generic virtio_pci virtio_mmio virtio_blk ext4"

log() { echo "mkdemo-arm64: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (device nodes, security.capability, dpkg --add-architecture)"
for t in apt-get apt-cache dpkg dpkg-deb cpio gzip jq go; do
	command -v $t >/dev/null || die "$t not installed"
done

# set_arm64 OCIDIR: testdata/mkoci always writes architecture amd64 into the image config. Rewrite the
# config's "architecture":"amd64" to "arm64" (same length, so every size stays), store it under its
# new digest, point the manifest at it (same length again), store the manifest under its new digest
# and point index.json at it, with platform linux/arm64 on the descriptor. Deterministic.
set_arm64() {
	_d=$1/blobs/sha256
	[ "$(jq '.manifests | length' "$1/index.json")" = 1 ] || die "set_arm64: $1 does not hold one manifest"
	_man=$(jq -r '.manifests[0].digest' "$1/index.json" | sed 's/^sha256://')
	_cfg=$(jq -r '.config.digest' "$_d/$_man" | sed 's/^sha256://')
	[ "$(grep -o '"architecture":"[a-z0-9]*"' "$_d/$_cfg")" = '"architecture":"amd64"' ] ||
		die "set_arm64: config $_cfg has no single \"architecture\":\"amd64\""
	sed 's/"architecture":"amd64"/"architecture":"arm64"/' "$_d/$_cfg" >"$_d/cfg.tmp"
	_ncfg=$(sha256sum "$_d/cfg.tmp" | cut -d' ' -f1)
	sed "s/sha256:$_cfg/sha256:$_ncfg/" "$_d/$_man" >"$_d/man.tmp"
	_nman=$(sha256sum "$_d/man.tmp" | cut -d' ' -f1)
	rm -f "$_d/$_cfg" "$_d/$_man"
	mv "$_d/cfg.tmp" "$_d/$_ncfg"
	mv "$_d/man.tmp" "$_d/$_nman"
	chmod 0644 "$_d/$_ncfg" "$_d/$_nman"
	jq --indent 3 --arg m "sha256:$_nman" \
		'.manifests[0].digest = $m | .manifests[0].platform = {"architecture": "arm64", "os": "linux"}' \
		"$1/index.json" >"$1/index.json.tmp"
	mv "$1/index.json.tmp" "$1/index.json"
	chmod 0644 "$1/index.json"
}

hash=$(cat "$0" "$here/mkdemo.sh" $(ls "$here"/mkoci/*.go | grep -v _test.go) "$here"/setxattr/*.go |
	sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
rm -f "$out/stamp"
sh "$here/mkdemo.sh" >/dev/null
mkdir -p "$out/debs"

# --- download (arm64 packages: no emulation, only dpkg's architecture list and apt's indexes) -----------
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	log "dpkg --add-architecture arm64; apt-get update"
	dpkg --add-architecture arm64
	apt-get -q update >&2
fi
kpkg=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {sub(/:arm64$/, "", $2); print $2; exit}')
if [ -z "$kpkg" ]; then
	log "apt-get update (no arm64 package indexes)"
	apt-get -q update >&2
	kpkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ {sub(/:arm64$/, "", $2); print $2; exit}')
fi
[ -n "$kpkg" ] || die "cannot resolve the kernel package of linux-image-arm64:arm64"
need=""
for p in "$kpkg" busybox-static systemd-boot-efi; do
	ls "$out/debs/${p}_"*_arm64.deb >/dev/null 2>&1 || need="$need $p:arm64"
done
if [ -n "$need" ]; then
	log "apt-get download$need"
	(cd "$out/debs" && apt-get -q -o APT::Sandbox::User=root download $need >&2)
fi
deb() { ls "$out/debs/${1}_"*_arm64.deb | tail -1; }

# busybox applets: the x86 demo's links, valid for the arm64 binary when both come from one source.
src_amd64=$(dpkg-deb -f "$(ls "$demo/debs/busybox-static_"*.deb | tail -1)" Source Version | tr '\n' ' ')
src_arm64=$(dpkg-deb -f "$(deb busybox-static)" Source Version | tr '\n' ' ')
[ "$src_amd64" = "$src_arm64" ] ||
	die "busybox-static amd64 ($src_amd64) and arm64 ($src_arm64) differ: the x86 applet list may not fit"

# --- extract -------------------------------------------------------------------------------------------
x="$out/extract"
rm -rf "$x"
mkdir -p "$x"
for p in "$kpkg" busybox-static systemd-boot-efi; do
	dpkg-deb -x "$(deb "$p")" "$x"
done
kver=$(ls "$x/boot" | sed -n 's/^vmlinuz-//p' | head -1)
[ -n "$kver" ] || die "no /boot/vmlinuz-* in $kpkg"
# An arm64 Image: "ARM\x64" at offset 56 (and, with the EFI stub, "MZ" at 0).
[ "$(od -An -c -j56 -N4 "$x/boot/vmlinuz-$kver" | tr -d ' ')" = 'ARMd' ] || die "vmlinuz-$kver is not an arm64 Image"
moddir=$(ls -d "$x/lib/modules/$kver" "$x/usr/lib/modules/$kver" 2>/dev/null | head -1)
[ -d "$moddir" ] || die "no modules directory for $kver"
bb="$x/bin/busybox"
[ -x "$bb" ] || die "no /bin/busybox in busybox-static"
efi="$x/usr/lib/systemd/boot/efi"
[ -f "$efi/systemd-bootaa64.efi" ] && [ -f "$efi/linuxaa64.efi.stub" ] ||
	die "no systemd-bootaa64.efi / linuxaa64.efi.stub in systemd-boot-efi:arm64"
log "kernel $kver"

# --- resolve modules: the package has no modules.dep (depmod runs in postinst), so read depends= -----
(cd "$moddir" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst') |
	awk '{n=$0; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n); print n, $0}' >"$x/modindex"
order=""
resolve() { # name: appends its dependency closure, then itself, to $order
	case " $order " in *" $1 "*) return 0 ;; esac
	_f=$(awk -v n="$1" '$1 == n {print $2; exit}' "$x/modindex")
	[ -n "$_f" ] || die "module $1 not in $kpkg (built in?)"
	case "$_f" in
	*.xz) xz -dc "$moddir/$_f" >"$x/$1.ko" ;;
	*.zst) zstd -qdc "$moddir/$_f" >"$x/$1.ko" ;;
	*) cp "$moddir/$_f" "$x/$1.ko" ;;
	esac
	_deps=$(tr '\0' '\n' <"$x/$1.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
	for _d in $_deps; do
		resolve "$(echo "$_d" | tr - _)"
	done
	case " $order " in *" $1 "*) ;; *) order="$order $1" ;; esac
}
for m in $want_modules; do resolve "$m"; done
log "modules:$order"

# --- initramfs: the x86 demo's, with the arm64 busybox and modules ------------------------------------
ir="$out/initramfs"
rm -rf "$ir"
cp -a "$demo/initramfs" "$ir"
rm -f "$ir"/lib/modules/*
cp "$bb" "$ir/bin/busybox"
for m in $order; do cp "$x/$m.ko" "$ir/lib/modules/$m.ko"; done
echo "$order" | tr ' ' '\n' | sed '/^$/d' >"$ir/lib/modules/load-order"
find "$ir" -exec touch -h -d "@$epoch" {} +

# --- demo root: the x86 demo's, with the arm64 kernel, initrd, busybox and EFI binaries -------------------
r="$out/root"
rm -rf "$r"
cp -a "$demo/root" "$r"
rm -f "$r"/boot/* "$r"/usr/lib/systemd/boot/efi/*
cp "$x/boot/vmlinuz-$kver" "$r/boot/vmlinuz-$kver"
(cd "$ir" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) | gzip -9n >"$r/boot/initrd.img-$kver"
cp "$efi/systemd-bootaa64.efi" "$efi/linuxaa64.efi.stub" "$r/usr/lib/systemd/boot/efi/"
cp "$bb" "$r/bin/busybox"
# cp -a keeps xattrs, but set them again: the capability is what the filesystem writer is tested on.
(cd "$repo" && go run ./testdata/setxattr "$r/opt/imgfab-fs/capability" security.capability 0100000200200000000000000000000000000000)
(cd "$repo" && go run ./testdata/setxattr "$r/opt/imgfab-fs/capability" user.imgfab 64656d6f)  # "demo"

# --- pack ----------------------------------------------------------------------------------------------
log "packing $out/oci"
rm -rf "$out/oci"
(cd "$repo" && go run ./testdata/mkoci -o "$out/oci" -tag demo -epoch "$epoch" "$r")
set_arm64 "$out/oci"
rm -rf "$x"
echo "$kver" >"$out/kver"
echo "$hash" >"$out/stamp"
echo "$out/oci"
