package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
	"time"
)

// Entry is one tar entry of a synthetic layer.
type Entry struct {
	Hdr  tar.Header
	Body string
}

// mtime is the modification time of the entries Reg, Dir, Symlink and Hardlink make.
var mtime = time.Unix(1600000000, 0)

// Reg is a regular file holding body.
func Reg(name, body string, mode int64) Entry {
	return Entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: mtime}, body}
}

// Dir is a directory; name ends with a slash.
func Dir(name string, mode int64) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: mtime}}
}

// Symlink is a symbolic link to target.
func Symlink(name, target string) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: mtime}}
}

// Hardlink is a hard link to the earlier entry target.
func Hardlink(name, target string) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: mtime}}
}

// BootEntries is the minimum a tree needs for a build to succeed (a fake kernel and loader:
// enough for the filesystem checks, not for a boot).
func BootEntries() []Entry {
	return []Entry{
		Dir("boot/", 0o755),
		Reg("boot/vmlinuz-1.0", "not really a kernel", 0o644),
		Reg("boot/initrd.img-1.0", "not really an initrd", 0o644),
		Dir("usr/", 0o755), Dir("usr/lib/", 0o755), Dir("usr/lib/systemd/", 0o755), Dir("usr/lib/systemd/boot/", 0o755),
		Dir("usr/lib/systemd/boot/efi/", 0o755),
		Reg("usr/lib/systemd/boot/efi/systemd-bootx64.efi", "MZ not really systemd-boot", 0o644),
	}
}

// ContentTree is BootEntries and every kind of entry the ext4 writer must carry through the
// whole pipeline: setuid, xattrs (a file capability), hard links, short and long symlinks,
// sticky and setgid directories, large ids, a file of several blocks, devices and a fifo.
func ContentTree() []Entry {
	mt := time.Unix(1600000000, 123456789)
	e := BootEntries()
	e = append(e,
		Dir("etc/", 0o755),
		Reg("etc/os-release", "PRETTY_NAME=\"imgfab content test\"\n", 0o644),
		Dir("bin/", 0o755),
		Entry{tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755, Uid: 0, Gid: 0, Size: 3, ModTime: mt}, "su\n"},
		Entry{tar.Header{Typeflag: tar.TypeReg, Name: "bin/ping", Mode: 0o755, Size: 5, ModTime: mt, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
				"SCHILY.xattr.user.note": "hello"}}, "ping\n"},
		Hardlink("bin/su-again", "bin/su"),
		Hardlink("bin/su-third", "bin/su"),
		Symlink("bin/sh", "busybox"),
		Symlink("bin/long", "/"+strings.Repeat("x", 100)),
		Entry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mt}},
		Entry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: "srv/", Mode: 0o2775, Uid: 70000, Gid: 80000, ModTime: mt}},
		Entry{tar.Header{Typeflag: tar.TypeReg, Name: "srv/data", Mode: 0o640, Uid: 70000, Gid: 80000, Size: 200000, ModTime: mt, Format: tar.FormatPAX},
			strings.Repeat("0123456789", 20000)},
		Dir("dev/", 0o755),
		Entry{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mt}},
		Entry{Hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/big", Mode: 0o600, Devmajor: 300, Devminor: 70000, ModTime: mt}},
		Entry{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o644, ModTime: mt}},
	)
	return e
}

// Tar is the tar stream of ents, in order (PAX where an entry has PAX records).
func Tar(t testing.TB, ents []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.Hdr
		if h.Format == 0 && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Gzip is b gzip-compressed (default level, no name, no mtime).
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// GzipTar is Gzip(Tar(t, ents)): the blob of a gzip-compressed layer.
func GzipTar(t testing.TB, ents []Entry) []byte {
	t.Helper()
	return Gzip(Tar(t, ents))
}
