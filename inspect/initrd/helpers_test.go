package initrd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/imgfab/imgfab/internal/testtool"
)

// ent is one entry of a synthesised newc archive.
type ent struct {
	name  string
	mode  uint32 // st_mode, type bits included
	data  string // file data, or a symlink's target
	ino   uint32
	nlink uint32
}

func file(name, data string) ent { return ent{name: name, mode: 0o100644, data: data} }
func dir(name string) ent        { return ent{name: name, mode: 0o040755} }
func link(name, to string) ent   { return ent{name: name, mode: 0o120777, data: to} }

// header writes one newc header with the given field values (a name size of -1: len(name)+1).
func header(w *bytes.Buffer, magic string, e ent, size, namesize int64, check uint32) {
	if namesize < 0 {
		namesize = int64(len(e.name)) + 1
	}
	nlink := max(e.nlink, 1)
	fmt.Fprintf(w, "%s%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		magic, e.ino, e.mode, 0, 0, nlink, 1700000000, size, 8, 1, 0, 0, namesize, check)
}

// newc is an archive of es and a trailer, in format magic ("070701" or "070702", with checksums).
func newc(magic string, es ...ent) []byte {
	var w bytes.Buffer
	for i, e := range append(es, ent{name: "TRAILER!!!"}) {
		if e.ino == 0 && e.name != "TRAILER!!!" {
			e.ino = uint32(100 + i)
		}
		var sum uint32
		if magic == "070702" {
			for _, b := range []byte(e.data) {
				sum += uint32(b)
			}
		}
		header(&w, magic, e, int64(len(e.data)), -1, sum)
		w.WriteString(e.name)
		w.WriteByte(0)
		pad(&w)
		w.WriteString(e.data)
		pad(&w)
	}
	return w.Bytes()
}

func pad(w *bytes.Buffer) {
	for w.Len()%4 != 0 {
		w.WriteByte(0)
	}
}

// sample is an archive with every kind of entry: directories, files, symlinks, hard links (the
// data with the last link, as GNU cpio writes them), a device, a fifo, 070701 or 070702.
func sample(magic string) []byte {
	return newc(magic,
		dir("."),
		dir("usr"), dir("usr/lib"), dir("usr/lib/modules"), dir("usr/lib/modules/6.1.0-50-amd64"),
		file("usr/lib/modules/6.1.0-50-amd64/kernel/drivers/nvme/host/nvme.ko", "\x7fELF nvme"),
		file("usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/xen-blkfront.ko.xz", "\xfd7zXZ"),
		file("usr/lib/modules/6.1.0-50-amd64/modules.builtin", "kernel/fs/ext4/ext4.ko\nkernel/drivers/block/virtio_blk.ko\n"),
		link("lib", "usr/lib"),
		link("bin/sh", "busybox"),
		ent{name: "bin/busybox", mode: 0o104755, data: "", ino: 7, nlink: 2},
		ent{name: "bin/ash", mode: 0o100755, data: "busybox binary", ino: 7, nlink: 2},
		ent{name: "dev/console", mode: 0o020600},
		ent{name: "run/initctl", mode: 0o010600},
		dir("tmp"),
		ent{name: "./init", mode: 0o100755, data: "#!/bin/sh\nexec /sbin/init\n"},
	)
}

// sampleListing is what the reader lists for sample in segment seg.
func sampleListing(seg int) []string {
	return []string{
		fmt.Sprintf(". drwxr-xr-x 0 %d", seg),
		fmt.Sprintf("usr drwxr-xr-x 0 %d", seg),
		fmt.Sprintf("usr/lib drwxr-xr-x 0 %d", seg),
		fmt.Sprintf("usr/lib/modules drwxr-xr-x 0 %d", seg),
		fmt.Sprintf("usr/lib/modules/6.1.0-50-amd64 drwxr-xr-x 0 %d", seg),
		fmt.Sprintf("usr/lib/modules/6.1.0-50-amd64/kernel/drivers/nvme/host/nvme.ko -rw-r--r-- 9 %d", seg),
		fmt.Sprintf("usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/xen-blkfront.ko.xz -rw-r--r-- 5 %d", seg),
		fmt.Sprintf("usr/lib/modules/6.1.0-50-amd64/modules.builtin -rw-r--r-- 58 %d", seg),
		fmt.Sprintf("lib Lrwxrwxrwx 7 %d -> usr/lib", seg),
		fmt.Sprintf("bin/sh Lrwxrwxrwx 7 %d -> busybox", seg),
		fmt.Sprintf("bin/busybox urwxr-xr-x 0 %d", seg),
		fmt.Sprintf("bin/ash -rwxr-xr-x 14 %d", seg),
		fmt.Sprintf("dev/console Dcrw------- 0 %d", seg),
		fmt.Sprintf("run/initctl prw------- 0 %d", seg),
		fmt.Sprintf("tmp drwxr-xr-x 0 %d", seg),
		fmt.Sprintf("init -rwxr-xr-x 26 %d", seg),
	}
}

// compress compresses b as the kernel's initramfs formats are made.
func compress(t testing.TB, codec string, b []byte) []byte {
	t.Helper()
	var w bytes.Buffer
	var wc io.WriteCloser
	var err error
	switch codec {
	case "none":
		return b
	case "gzip":
		wc, err = gzip.NewWriterLevel(&w, gzip.BestCompression)
	case "zstd":
		wc, err = zstd.NewWriter(&w, zstd.WithEncoderConcurrency(1))
	case "xz":
		wc, err = xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}.NewWriter(&w)
	case "lzma":
		wc, err = lzma.NewWriter(&w)
	case "lz4":
		zw := lz4.NewWriter(&w)
		err = zw.Apply(lz4.LegacyOption(true))
		wc = zw
	case "bzip2": // Go has no bzip2 writer
		bz := testtool.Need(t, "bzip2", "bzip2")
		cmd := exec.Command(bz, "-9c")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bzip2: %v", err)
		}
		return out
	default:
		t.Fatalf("codec %q", codec)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Bytes()
}

// listing reads every entry of b and its data: "name mode size segment[ -> target]" lines, the
// segments, and the first error (not io.EOF). It checks that Read yields Size bytes.
func listing(t testing.TB, b []byte, lim limits) ([]string, []string, error) {
	t.Helper()
	rd := newReader(context.Background(), bytes.NewReader(b), lim)
	var out []string
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return out, rd.Segments(), nil
		}
		if err != nil {
			return out, rd.Segments(), err
		}
		n, err := io.Copy(io.Discard, rd)
		if err != nil {
			return out, rd.Segments(), err
		}
		if n != e.Size {
			t.Errorf("%s: read %d bytes of data, Size %d", e.Name, n, e.Size)
		}
		s := fmt.Sprintf("%s %v %d %d", e.Name, e.Mode, e.Size, e.Segment)
		if e.Mode&fs.ModeSymlink != 0 {
			s += " -> " + e.Linkname
		}
		out = append(out, s)
	}
}

func isLimit(err error) bool { return errors.Is(err, ErrLimit) }
