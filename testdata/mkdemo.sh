#!/bin/sh
# mkdemo.sh — the built-in demo image: a Debian 12 kernel, a busybox initramfs that finds
# root=PARTUUID= by reading the GPT itself, and a busybox root whose /sbin/init prints IMGFAB-BOOT-OK.
# Needs root (device nodes, security.capability), apt-get, dpkg-deb, cpio, gzip and the Go toolchain.
#
# Outputs (under testdata/cache/demo/):
#   oci/       OCI image layout, tag "demo" (what `make demo` and the boot test use)
#   root/      the staged root tree that was packed (checkdemo.sh boots it without imgfab)
#   debs/      the downloaded .deb files;   initramfs/  the staged initramfs tree
# Idempotent: if oci/ exists and neither this script nor testdata/mkoci, testdata/setxattr changed,
# prints the path and exits.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$here/cache/demo"
epoch=1700000000
# Modules the initramfs loads (their depends= closure is added, dependencies first). crc32c_generic
# is ext4's and jbd2's softdep "crypto-crc32c", which nothing can request_module() in our initramfs.
want_modules="crc32c_generic virtio_pci virtio_blk ext4"

log() { echo "mkdemo: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (device nodes, security.capability)"; exit 1; }
for t in apt-get apt-cache dpkg-deb cpio gzip go; do
	command -v $t >/dev/null || { log "$t not installed"; exit 1; }
done

hash=$(cat "$0" $(ls "$here"/mkoci/*.go | grep -v _test.go) "$here"/setxattr/*.go | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out/oci"
	exit 0
fi
rm -f "$out/stamp"
mkdir -p "$out/debs"

# --- download ----------------------------------------------------------------------------------------
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { log "cannot resolve the kernel package of linux-image-amd64 (apt-get update?)"; exit 1; }
need=""
for p in linux-image-amd64 "$kpkg" busybox-static systemd-boot-efi; do
	ls "$out/debs/${p}_"*.deb >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
	log "apt-get download$need"
	(cd "$out/debs" && apt-get -q -o APT::Sandbox::User=root download $need >&2)
fi

# --- extract -------------------------------------------------------------------------------------------
x="$out/extract"
rm -rf "$x"
mkdir -p "$x"
for p in "$kpkg" busybox-static systemd-boot-efi; do
	dpkg-deb -x "$(ls "$out/debs/${p}_"*.deb | tail -1)" "$x"
done
kver=$(ls "$x/boot" | sed -n 's/^vmlinuz-//p' | head -1)
[ -n "$kver" ] || { log "no /boot/vmlinuz-* in $kpkg"; exit 1; }
moddir=$(ls -d "$x/lib/modules/$kver" "$x/usr/lib/modules/$kver" 2>/dev/null | head -1)
[ -d "$moddir" ] || { log "no modules directory for $kver"; exit 1; }
bb="$x/bin/busybox"
[ -x "$bb" ] || { log "no /bin/busybox in busybox-static"; exit 1; }
log "kernel $kver"

# --- resolve modules: the package has no modules.dep (depmod runs in postinst), so read depends= -----
(cd "$moddir" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst') |
	awk '{n=$0; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n); print n, $0}' >"$x/modindex"
order=""
resolve() { # name: appends its dependency closure, then itself, to $order
	case " $order " in *" $1 "*) return 0 ;; esac
	_f=$(awk -v n="$1" '$1 == n {print $2; exit}' "$x/modindex")
	[ -n "$_f" ] || { log "module $1 not in $kpkg (built in?)"; exit 1; }
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

# --- initramfs -------------------------------------------------------------------------------------------
ir="$out/initramfs"
rm -rf "$ir"
mkdir -p "$ir/bin" "$ir/dev" "$ir/proc" "$ir/sys" "$ir/newroot" "$ir/lib/modules"
cp "$bb" "$ir/bin/busybox"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$ir/bin/$a"; done
ln -s bin "$ir/sbin"
mknod -m 600 "$ir/dev/console" c 5 1
mknod -m 666 "$ir/dev/null" c 1 3
for m in $order; do cp "$x/$m.ko" "$ir/lib/modules/$m.ko"; done
echo "$order" | tr ' ' '\n' | sed '/^$/d' >"$ir/lib/modules/load-order"
cat >"$ir/init" <<'EOF'
#!/bin/sh
# imgfab demo initramfs: load modules, find root=PARTUUID= in the GPT, mount it, switch_root.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
say() { echo "initramfs: $*"; }
fail() {
	echo "initramfs: FATAL: $*"
	case " $(cat /proc/cmdline) " in
	*" imgfab.test "*) echo "IMGFAB-BOOT-FAIL initramfs"; poweroff -f ;;
	esac
	echo "initramfs: dropping to a shell"
	exec setsid cttyhack sh
}
say "imgfab demo initramfs, kernel $(uname -r)"

for m in $(cat /lib/modules/load-order); do
	say "insmod $m"
	insmod /lib/modules/$m.ko || say "insmod $m failed (continuing)"
done

root= rootflags=rw rootfstype=ext4 rootwait=30
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	root=*) root=${arg#root=} ;;
	ro) rootflags=ro ;;
	rw) rootflags=rw ;;
	rootfstype=*) rootfstype=${arg#rootfstype=} ;;
	imgfab.rootwait=*) rootwait=${arg#imgfab.rootwait=} ;;
	esac
done
[ -n "$root" ] || fail "no root= on the kernel command line"
say "root=$root ($rootflags, $rootfstype)"

# rev HEX: the bytes of HEX (2 hex digits each) in reverse order.
rev() { _h=$1 _r=; while [ -n "$_h" ]; do _r=${_h%"${_h#??}"}$_r; _h=${_h#??}; done; echo "$_r"; }
# le HEX: the little-endian unsigned integer whose bytes are HEX, in decimal.
le() { echo $((0x$(rev "$1"))); }
# find_partuuid UUID: prints /dev/NAME of the GPT partition whose unique partition GUID is UUID.
find_partuuid() {
	# The GUID as it is stored on disk: first three fields little-endian.
	set -- $(echo "$1" | tr A-F a-f | tr - ' ')
	[ $# = 5 ] && [ ${#1} = 8 ] && [ ${#2} = 4 ] && [ ${#3} = 4 ] && [ ${#4} = 4 ] && [ ${#5} = 12 ] || return 2
	raw=$(rev "$1")$(rev "$2")$(rev "$3")$4$5
	for d in /sys/block/*; do
		[ -e "$d/device" ] || continue
		disk=${d##*/}
		[ -b "/dev/$disk" ] || continue
		ss=$(cat "$d/queue/logical_block_size" 2>/dev/null || echo 512)
		hdr=$(dd if="/dev/$disk" bs="$ss" skip=1 count=1 2>/dev/null | hexdump -v -e '1/1 "%02x"')
		case "$hdr" in 4546492050415254*) ;; *) continue ;; esac   # "EFI PART"
		elba=$(le "$(echo "$hdr" | cut -c145-160)")
		n=$(le "$(echo "$hdr" | cut -c161-168)")
		esz=$(le "$(echo "$hdr" | cut -c169-176)")
		[ "$n" -ge 1 ] && [ "$n" -le 1024 ] && [ "$esz" -ge 128 ] && [ "$esz" -le 4096 ] || continue
		# One line of hex per partition entry; unique GUID = entry bytes 16..31.
		num=$(dd if="/dev/$disk" bs="$ss" skip="$elba" count=$(((n * esz + ss - 1) / ss)) 2>/dev/null |
			hexdump -v -e "$esz/1 \"%02x\" \"\\n\"" | head -n "$n" | grep -n "^.\{32\}$raw" | cut -d: -f1 | head -1)
		[ -n "$num" ] || continue
		for p in /sys/block/$disk/$disk*; do
			[ "$(cat "$p/partition" 2>/dev/null)" = "$num" ] && { echo "/dev/${p##*/}"; return 0; }
		done
	done
	return 1
}

dev=
deadline=$(($(date +%s) + rootwait))
while :; do
	case "$root" in
	PARTUUID=*) dev=$(find_partuuid "${root#PARTUUID=}") || [ $? != 2 ] || fail "malformed root=$root" ;;
	/dev/*) [ -b "$root" ] && dev=$root ;;
	*) fail "unsupported root=$root (use PARTUUID= or /dev/...)" ;;
	esac
	[ -n "$dev" ] && [ -b "$dev" ] && break
	[ "$(date +%s)" -lt $deadline ] ||
		fail "root device $root did not appear within ${rootwait}s (disks: $(ls /sys/block | tr '\n' ' '))"
	usleep 500000
done
say "root device $dev"
mount -t "$rootfstype" -o "$rootflags" "$dev" /newroot || fail "mount $dev on /newroot failed"
[ -x /newroot/sbin/init ] || [ -L /newroot/sbin/init ] || fail "no /sbin/init on $dev"
say "switch_root to /sbin/init"
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
umount /sys
umount /proc
exec switch_root /newroot /sbin/init
EOF
chmod 755 "$ir/init"
find "$ir" -exec touch -h -d "@$epoch" {} +

# --- demo root -----------------------------------------------------------------------------------------
r="$out/root"
rm -rf "$r"
mkdir -p "$r/bin" "$r/sbin" "$r/etc" "$r/boot" "$r/dev" "$r/proc" "$r/sys" "$r/run" "$r/tmp" "$r/root" \
	"$r/mnt" "$r/var/log" "$r/usr/lib/systemd/boot/efi" "$r/opt/imgfab-fs"
chmod 1777 "$r/tmp"
chmod 700 "$r/root"
cp "$x/boot/vmlinuz-$kver" "$r/boot/vmlinuz-$kver"
(cd "$ir" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) | gzip -9n >"$r/boot/initrd.img-$kver"
cp "$x/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$r/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
cp "$bb" "$r/bin/busybox"
for a in $("$bb" --list); do
	case "$a" in busybox | init | linuxrc) ;; *) ln -s busybox "$r/bin/$a" ;; esac
done
mknod -m 666 "$r/dev/null" c 1 3
mknod -m 600 "$r/dev/console" c 5 1
cat >"$r/etc/os-release" <<'EOF'
NAME="imgfab demo"
ID=imgfab-demo
VERSION_ID=1
PRETTY_NAME="imgfab demo (busybox on Debian 12 kernel)"
EOF
echo imgfab-demo >"$r/etc/hostname"
printf 'root::0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
cat >"$r/sbin/init" <<'EOF'
#!/bin/sh
# imgfab demo init: prints the boot marker; with imgfab.test on the command line runs
# /etc/imgfab-test.sh and powers off, else gives a shell on the console.
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
hostname -F /etc/hostname
echo IMGFAB-BOOT-OK
. /etc/os-release
echo "$PRETTY_NAME"
case " $(cat /proc/cmdline) " in
*" imgfab.test "*)
	[ -f /etc/imgfab-test.sh ] && sh /etc/imgfab-test.sh
	sync
	poweroff -f
	;;
esac
while :; do setsid cttyhack sh -l; done
EOF
chmod 755 "$r/sbin/init"
# Files that exercise the filesystem writer; /etc/imgfab-test.sh checks them at boot.
f="$r/opt/imgfab-fs"
printf '#!/bin/sh\necho setuid\n' >"$f/setuid"
chmod 4755 "$f/setuid"
printf '#!/bin/sh\necho setgid\n' >"$f/setgid"
chmod 2755 "$f/setgid"
mkdir "$f/sticky" && chmod 1777 "$f/sticky"
echo "hardlinked content" >"$f/hardlink-a"
ln "$f/hardlink-a" "$f/hardlink-b"
ln -s hardlink-a "$f/symlink"
ln -s /a/long/symlink/target/that/does/not/fit/in/the/inode/because/it/is/longer/than/sixty/bytes "$f/longsymlink"
mkfifo "$f/fifo"
mknod "$f/chardev" c 1 3
mknod "$f/blockdev" b 7 0
echo "capability file" >"$f/capability"
chown 1000:1000 "$f/hardlink-a"
(cd "$repo" && go run ./testdata/setxattr "$f/capability" security.capability 0100000200200000000000000000000000000000)
(cd "$repo" && go run ./testdata/setxattr "$f/capability" user.imgfab 64656d6f)  # "demo"
dd if=/dev/zero bs=1024 count=0 seek=8192 of="$f/sparse" 2>/dev/null                      # 8 MiB hole
printf 'end' >>"$f/sparse"
cat >"$r/etc/imgfab-test.sh" <<'EOF'
# Run by /sbin/init when imgfab.test is on the kernel command line. Prints IMGFAB-FS-OK or
# IMGFAB-FS-FAIL lines.
cd /opt/imgfab-fs || { echo "IMGFAB-FS-FAIL no /opt/imgfab-fs"; exit 0; }
bad=0
check() { if eval "$1"; then :; else echo "IMGFAB-FS-FAIL $1"; bad=1; fi; }
check '[ -u setuid ] && [ -x setuid ]'
check '[ -g setgid ]'
check '[ -k sticky ] && [ -d sticky ]'
check '[ "$(stat -c %i hardlink-a)" = "$(stat -c %i hardlink-b)" ] && [ "$(stat -c %h hardlink-a)" = 2 ]'
check '[ "$(stat -c %u:%g hardlink-b)" = 1000:1000 ]'
check '[ "$(cat hardlink-b)" = "hardlinked content" ]'
check '[ -L symlink ] && [ "$(readlink symlink)" = hardlink-a ] && [ "$(cat symlink)" = "hardlinked content" ]'
check '[ "$(readlink longsymlink)" = /a/long/symlink/target/that/does/not/fit/in/the/inode/because/it/is/longer/than/sixty/bytes ]'
check '[ -p fifo ]'
check '[ -c chardev ] && [ "$(stat -c %t:%T chardev)" = 1:3 ]'
check '[ -b blockdev ] && [ "$(stat -c %t:%T blockdev)" = 7:0 ]'
check '[ -c /dev/null ]'
check '[ "$(stat -c %s sparse)" = 8388611 ] && [ "$(tail -c 3 sparse)" = end ]'
check '[ "$(cat /etc/hostname)" = imgfab-demo ]'
check 'echo written >/tmp/imgfab-rw && [ "$(cat /tmp/imgfab-rw)" = written ]'
[ $bad = 0 ] && echo IMGFAB-FS-OK
EOF

# --- pack ----------------------------------------------------------------------------------------------
log "packing $out/oci"
rm -rf "$out/oci"
(cd "$repo" && go run ./testdata/mkoci -o "$out/oci" -tag demo -epoch "$epoch" "$r")
rm -rf "$x"
echo "$kver" >"$out/kver"
echo "$hash" >"$out/stamp"
echo "$out/oci"
