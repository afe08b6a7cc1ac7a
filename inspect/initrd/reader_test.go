package initrd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func zeros(n int) []byte { return make([]byte, n) }

// TestSegments reads the sample archive in every layout the kernel accepts: each compression
// alone, early-microcode style (uncompressed then compressed), compressed streams back to back
// with and without padding, and several archives in one stream.
func TestSegments(t *testing.T) {
	small := newc("070701", dir("kernel"), file("kernel/x86/microcode/GenuineIntel.bin", "microcode"))
	smallList := []string{"kernel drwxr-xr-x 0 0", "kernel/x86/microcode/GenuineIntel.bin -rw-r--r-- 9 0"}
	shift := func(l []string, seg int) []string { // the listing of sample/small in segment seg
		out := slices.Clone(l)
		for i, s := range out {
			f := strings.Fields(s)
			f[3] = string(rune('0' + seg))
			out[i] = strings.Join(f, " ")
		}
		return out
	}
	type tc struct {
		name  string
		input func(t *testing.T) []byte
		segs  []string
		want  []string
	}
	var cases []tc
	for _, c := range []string{"none", "gzip", "zstd", "xz", "lz4", "lzma", "bzip2"} {
		cases = append(cases, tc{c, func(t *testing.T) []byte { return compress(t, c, sample("070701")) }, []string{c}, sampleListing(0)})
	}
	cases = append(cases,
		tc{"070702", func(t *testing.T) []byte { return sample("070702") }, []string{"none"}, sampleListing(0)},
		tc{"070702 gzip", func(t *testing.T) []byte { return compress(t, "gzip", sample("070702")) }, []string{"gzip"}, sampleListing(0)},
		tc{"early microcode none+zstd", func(t *testing.T) []byte {
			return cat(small, zeros(512-len(small)%512), compress(t, "zstd", sample("070701")))
		}, []string{"none", "zstd"}, append(slices.Clone(smallList), sampleListing(1)...)},
		tc{"none+none", func(t *testing.T) []byte { return cat(small, small) }, []string{"none", "none"},
			append(slices.Clone(smallList), shift(smallList, 1)...)},
		tc{"none+4 zeros+xz", func(t *testing.T) []byte { return cat(small, zeros(4), compress(t, "xz", sample("070701"))) },
			[]string{"none", "xz"}, append(slices.Clone(smallList), sampleListing(1)...)},
	)
	// Two compressed segments back to back, each codec followed by each that can follow
	// (lz4 runs to the end of the input, so it is only ever last).
	for _, a := range []string{"gzip", "zstd", "xz", "lzma", "bzip2"} {
		for _, b := range []string{"gzip", "zstd", "xz", "lz4", "lzma", "bzip2"} {
			segs, seg := []string{a, b}, 1
			if a == "bzip2" && b == "bzip2" { // compress/bzip2 reads concatenated streams as one
				segs, seg = []string{a}, 0
			}
			cases = append(cases, tc{a + "+" + b, func(t *testing.T) []byte {
				return cat(compress(t, a, small), compress(t, b, sample("070701")))
			}, segs, append(slices.Clone(smallList), sampleListing(seg)...)})
		}
		cases = append(cases, tc{a + "+zeros+none", func(t *testing.T) []byte {
			c := compress(t, a, sample("070701"))
			return cat(c, zeros(4-len(c)%4+4096), small)
		}, []string{a, "none"}, append(sampleListing(0), shift(smallList, 1)...)})
	}
	cases = append(cases,
		tc{"two archives in one gzip stream", func(t *testing.T) []byte {
			return compress(t, "gzip", cat(small, zeros(512), sample("070701")))
		}, []string{"gzip"}, append(slices.Clone(smallList), sampleListing(0)...)},
		tc{"trailing zeros", func(t *testing.T) []byte { return cat(compress(t, "zstd", small), zeros(7)) },
			[]string{"zstd"}, smallList},
		tc{"empty gzip stream then archive", func(t *testing.T) []byte { return cat(compress(t, "gzip", nil), small) },
			[]string{"gzip", "none"}, shift(smallList, 1)},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, segs, err := listing(t, c.input(t), defaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(segs, c.segs) {
				t.Errorf("segments %q, want %q", segs, c.segs)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	early := newc("070701", file("kernel/x86/microcode/AuthenticAMD.bin", "ucode"))
	b := cat(early, compress(t, "zstd", sample("070702")), compress(t, "gzip", newc("070701",
		file("lib/modules/5.10.0-1-amd64/kernel/fs/ext4/ext4.ko.zst", "x"),
		file("lib/modules/5.10.0-1-amd64/modules.builtin", "kernel/drivers/virtio/virtio_pci.ko\n  kernel/x/hv-vmbus.ko  \n\nnot-a-module\n"),
		file("usr/sbin/fsck.ext4", "fsck"),
		file("lib/modules/load-order", "nvme\n"), // not a version directory
		file("etc/modules/dummy.ko.gz", "dummy"), // a module anywhere counts
		link("lib/modules/kernel-link.ko", "x"),  // not a regular file
	)))
	s, err := Summarize(context.Background(), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s %q, want %q", what, got, want)
		}
	}
	check("segments", s.Segments, []string{"none", "zstd", "gzip"})
	check("modules", s.Modules, []string{"dummy", "ext4", "nvme", "xen_blkfront"})
	check("kernel versions", s.KernelVersions, []string{"5.10.0-1-amd64", "6.1.0-50-amd64"})
	check("builtin", s.Builtin, []string{"ext4", "hv_vmbus", "virtio_blk", "virtio_pci"})
	if s.Files != 1+16+6 {
		t.Errorf("Files %d, want %d", s.Files, 1+16+6)
	}
	for name, want := range map[string]bool{
		"usr/sbin/fsck.ext4": true, "/usr/sbin/fsck.ext4": true, "init": true, "/": true, ".": true,
		"lib": true, "sbin/fsck.ext4": false, "lib/modules/6.1.0-50-amd64": false, "usr/sbin": false,
		"usr/lib/modules/6.1.0-50-amd64/": true, "kernel/x86/microcode/AuthenticAMD.bin": true,
	} {
		if s.Has(name) != want {
			t.Errorf("Has(%q) = %v, want %v", name, !want, want)
		}
	}
}

func TestSummarizeEmpty(t *testing.T) {
	for _, b := range [][]byte{nil, zeros(100)} {
		s, err := Summarize(context.Background(), bytes.NewReader(b))
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), "no archive") {
			t.Errorf("%d bytes: got %v, want a no-archive *Error", len(b), err)
		}
		if s == nil || len(s.Segments) != 0 {
			t.Errorf("%d bytes: summary %+v", len(b), s)
		}
	}
}

// TestReadData checks that Read gives each entry's data, a symlink's target included.
func TestReadData(t *testing.T) {
	rd := NewReader(bytes.NewReader(compress(t, "xz", sample("070702"))))
	got := map[string]string{}
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Name == "bin/ash" || e.Name == "init" || e.Name == "lib" {
			b, err := io.ReadAll(rd)
			if err != nil {
				t.Fatal(err)
			}
			got[e.Name] = string(b)
		}
	}
	want := map[string]string{"bin/ash": "busybox binary", "init": "#!/bin/sh\nexec /sbin/init\n", "lib": "usr/lib"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: data %q, want %q", k, got[k], v)
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Errorf("Next after the end: %v", err)
	}
}

// TestLz4Padding: the lz4 legacy format has no end marker; zero padding after it (4-byte
// blocks of size 0) is read to the end of the input.
func TestLz4Padding(t *testing.T) {
	got, segs, err := listing(t, cat(compress(t, "lz4", sample("070701")), zeros(4096)), defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(segs, []string{"lz4"}) || !slices.Equal(got, sampleListing(0)) {
		t.Errorf("segments %q, listing\n%s", segs, strings.Join(got, "\n"))
	}
}
