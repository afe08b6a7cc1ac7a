package initrd

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// oracleTree makes a directory with every kind of file GNU cpio archives: sizes around the 4-byte
// padding, a 70 KB file, symlinks (one with a 200-byte target), hard links, a fifo, setuid and
// sticky bits, names with spaces and UTF-8.
func oracleTree(t *testing.T) string {
	root := t.TempDir()
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 70000)
	for i := range big {
		big[i] = byte(rnd.IntN(256))
	}
	files := map[string][]byte{
		"empty": nil, "one": []byte("1"), "three": []byte("abc"), "four": []byte("abcd"), "five": []byte("abcde"),
		"usr/lib/modules/6.1.0-50-amd64/kernel/fs/ext4/ext4.ko": big,
		"with space/ünïcødé name":                               []byte("x"),
		"hard/a":                                                []byte("linked data"),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Link(filepath.Join(root, "hard/a"), filepath.Join(root, "hard/b")))
	must(os.Symlink("usr/lib", filepath.Join(root, "lib")))
	must(os.Symlink(strings.Repeat("long/", 40), filepath.Join(root, "longlink")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	must(os.Chmod(filepath.Join(root, "five"), 0o4755))
	must(os.Mkdir(filepath.Join(root, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	return root
}

// cpioArchive archives dir with GNU cpio in format ("newc" or "crc", which is 070702).
func cpioArchive(t *testing.T, dir, format string) []byte {
	cpio := testtool.Need(t, "cpio", "cpio")
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | "+cpio+" --quiet -o -H "+format)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -o: %v", err)
	}
	return out
}

// cpioNames lists an uncompressed archive with `cpio -it`.
func cpioNames(t *testing.T, archive []byte) []string {
	cmd := exec.Command(testtool.Need(t, "cpio", "cpio"), "--quiet", "-it")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -it: %v", err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		names = append(names, cleanName(l))
	}
	return names
}

// toolCompress runs a real compressor on b.
func toolCompress(t *testing.T, pkg string, args ...string) func([]byte) []byte {
	return func(b []byte) []byte {
		cmd := exec.Command(testtool.Need(t, args[0], pkg), args[1:]...)
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		return out
	}
}

// TestOracleCpio checks the reader against GNU cpio: the names `cpio -it` lists, and the modes,
// sizes and data of the files cpio -o archived, in newc and crc (070702) format, uncompressed and
// compressed by each real tool the kernel's formats come from (lz4 -l is the kernel's legacy lz4).
func TestOracleCpio(t *testing.T) {
	root := oracleTree(t)
	for _, format := range []string{"newc", "crc"} {
		archive := cpioArchive(t, root, format)
		names := cpioNames(t, archive)
		tools := []struct {
			name, compression string
			compress          func([]byte) []byte
		}{
			{"none", "none", func(b []byte) []byte { return b }},
			{"gzip -9n", "gzip", toolCompress(t, "gzip", "gzip", "-9nc")},
			{"zstd -19", "zstd", toolCompress(t, "zstd", "zstd", "-19", "-q", "-c")},
			{"xz (initramfs-tools)", "xz", toolCompress(t, "xz-utils", "xz", "--check=crc32", "-c")},
			{"xz (dracut)", "xz", toolCompress(t, "xz-utils", "xz", "--check=crc32", "--lzma2=dict=1MiB", "-c")},
			{"xz multi-block crc64", "xz", toolCompress(t, "xz-utils", "xz", "-T2", "--block-size=16KiB", "--check=crc64", "-c")},
			{"xz sha256", "xz", toolCompress(t, "xz-utils", "xz", "--check=sha256", "-0", "-c")},
			{"lzma -9", "lzma", toolCompress(t, "xz-utils", "lzma", "-9", "-c")},
			{"lz4 -l", "lz4", toolCompress(t, "lz4", "lz4", "-l", "-9", "-c")},
			{"bzip2 -9", "bzip2", toolCompress(t, "bzip2", "bzip2", "-9", "-c")},
		}
		for _, tool := range tools {
			t.Run(format+"/"+tool.name, func(t *testing.T) {
				compareTree(t, root, tool.compress(archive), names, tool.compression)
			})
		}
	}
}

// compareTree reads b (one segment of compression c holding the archive of root that cpio lists
// as names) and compares every entry with the file it came from.
func compareTree(t *testing.T, root string, b []byte, names []string, c string) {
	rd := NewReader(bytes.NewReader(b))
	var got []string
	linked := map[uint64]int64{} // inode → data bytes over its links
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Name)
		p := filepath.Join(root, e.Name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if e.Mode != fi.Mode() {
			t.Errorf("%s: mode %v, the file's %v", e.Name, e.Mode, fi.Mode())
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != e.Size {
			t.Errorf("%s: %d bytes read, Size %d", e.Name, len(data), e.Size)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			if e.Linkname != target || string(data) != target {
				t.Errorf("%s: target %q (data %q), the link's %q", e.Name, e.Linkname, data, target)
			}
		case fi.Mode().IsRegular() && fi.Sys().(*syscall.Stat_t).Nlink > 1:
			// GNU cpio writes a hard-linked file's data with its last link, size 0 with the others.
			linked[fi.Sys().(*syscall.Stat_t).Ino] += e.Size
		case fi.Mode().IsRegular():
			want, _ := os.ReadFile(p)
			if !bytes.Equal(data, want) {
				t.Errorf("%s: data differs (%d bytes, the file's %d)", e.Name, len(data), len(want))
			}
		}
	}
	for ino, n := range linked {
		if n != int64(len("linked data")) {
			t.Errorf("hard links of inode %d: %d data bytes in all", ino, n)
		}
	}
	if !slices.Equal(got, names) {
		t.Errorf("names\n%q\ncpio -it\n%q", got, names)
	}
	if !slices.Equal(rd.Segments(), []string{c}) {
		t.Errorf("segments %q, want [%s]", rd.Segments(), c)
	}
}

// TestOracleEarlyMicrocode makes an initrd the way initramfs-tools and dracut do: an uncompressed
// early cpio (kernel/x86/microcode/) followed by the compressed main archive, with real tools.
func TestOracleEarlyMicrocode(t *testing.T) {
	early := t.TempDir()
	if err := os.MkdirAll(filepath.Join(early, "kernel/x86/microcode"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(early, "kernel/x86/microcode/GenuineIntel.bin"), []byte("ucode"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := cpioArchive(t, early, "newc")
	main := cpioArchive(t, oracleTree(t), "newc")
	for _, c := range []struct {
		name     string
		compress func([]byte) []byte
	}{
		{"zstd", toolCompress(t, "zstd", "zstd", "-q", "-c")},
		{"xz", toolCompress(t, "xz-utils", "xz", "--check=crc32", "-c")},
		{"gzip", toolCompress(t, "gzip", "gzip", "-nc")},
		{"lz4", toolCompress(t, "lz4", "lz4", "-l", "-c")},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Summarize(context.Background(), bytes.NewReader(cat(e, c.compress(main))))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Segments, []string{"none", c.name}) {
				t.Errorf("segments %q", s.Segments)
			}
			if !s.Has("kernel/x86/microcode/GenuineIntel.bin") || !s.Has("hard/b") || !slices.Equal(s.Modules, []string{"ext4"}) {
				t.Errorf("summary %+v", s)
			}
		})
	}
}
