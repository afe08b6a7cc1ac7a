package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/internal/testtool"
)

// claimLimits are the bounds of issue #10: no input under 10 MiB may make a command run longer
// than 60 s or use more than 1 GiB.
const (
	claimMaxInput = 10 << 20
	claimMaxTime  = 60 * time.Second
	claimMaxRSS   = 1 << 30
)

// extremes are the values hostile headers claim.
var extremes = []uint64{0, 1, 512, 1 << 31, 1<<32 - 1, 1 << 32, 1 << 40, 1 << 56, 1<<63 - 1, 1<<64 - 1}

func claimValue(rng *rand.Rand) uint64 {
	if rng.IntN(3) == 0 {
		return rng.Uint64() >> rng.IntN(64)
	}
	return extremes[rng.IntN(len(extremes))]
}

// mutateWords overwrites n random 4- or 8-byte words in b[lo:hi] with claimed values, in either
// byte order (qcow2 is big-endian, VMDK and GPT little-endian, VHD big-endian).
func mutateWords(rng *rand.Rand, b []byte, lo, hi, n int) {
	hi = min(hi, len(b))
	for range n {
		w := 4 << rng.IntN(2)
		if hi-lo < w {
			return
		}
		off := lo + rng.IntN((hi-lo)/w)*w
		v := claimValue(rng)
		switch {
		case w == 8 && rng.IntN(2) == 0:
			binary.BigEndian.PutUint64(b[off:], v)
		case w == 8:
			binary.LittleEndian.PutUint64(b[off:], v)
		case rng.IntN(2) == 0:
			binary.BigEndian.PutUint32(b[off:], uint32(v))
		default:
			binary.LittleEndian.PutUint32(b[off:], uint32(v))
		}
	}
}

// mutateGPT changes fields of the primary GPT header (LBA 1) and its entries, then recomputes
// both CRCs so that the claims get past the checksums.
func mutateGPT(rng *rand.Rand, b []byte) {
	h := b[512:1024]
	fields := []int{24, 32, 40, 48, 72, 80, 84}
	for range 1 + rng.IntN(3) {
		off := fields[rng.IntN(len(fields))]
		v := claimValue(rng)
		if off == 80 || off == 84 {
			binary.LittleEndian.PutUint32(h[off:], uint32(v))
		} else {
			binary.LittleEndian.PutUint64(h[off:], v)
		}
	}
	ents := b[1024 : 1024+128*4]
	for range rng.IntN(4) {
		e := rng.IntN(4) * 128
		binary.LittleEndian.PutUint64(ents[e+32+8*rng.IntN(2):], claimValue(rng))
	}
	n, size := binary.LittleEndian.Uint32(h[80:]), binary.LittleEndian.Uint32(h[84:])
	if l := uint64(n) * uint64(size); l > 0 && l <= 128*128 && binary.LittleEndian.Uint64(h[72:]) == 2 {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[1024:1024+l]))
	}
	hs := binary.LittleEndian.Uint32(h[12:])
	if hs < 92 || hs > 512 {
		hs = 92
	}
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
}

// mutateGCE rewrites the first tar header of a GCE tarball: a claimed size, or an old-GNU sparse
// member with claimed offsets, sizes and real size; the header checksum is recomputed.
func mutateGCE(t *testing.T, rng *rand.Rand, gz []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	h := tb[:512]
	octal := func(off, width int, v uint64) {
		s := fmt.Sprintf("%0*o", width-1, v)
		if len(s) > width-1 { // base-256, as GNU tar writes large numbers
			f := h[off : off+width]
			clear(f)
			f[0] = 0x80
			binary.BigEndian.PutUint64(f[width-8:], v)
			return
		}
		copy(h[off:], s+"\x00")
	}
	if rng.IntN(2) == 0 {
		octal(124, 12, claimValue(rng)) // size
	} else {
		h[156] = 'S'
		for i := range 1 + rng.IntN(4) {
			octal(386+24*i, 12, claimValue(rng)&^511)
			octal(386+24*i+12, 12, claimValue(rng)&^511)
		}
		octal(483, 12, claimValue(rng)&^511) // realsize
	}
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(tb)
	zw.Close()
	return out.Bytes()
}

// smallGCE is a GCE tarball holding disk (a multiple of 512 bytes) as disk.raw.
func smallGCE(t *testing.T, disk []byte) []byte {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "disk.raw", Mode: 0o644, Size: int64(len(disk)), Typeflag: tar.TypeReg, Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	tw.Write(disk)
	tw.Close()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(tb.Bytes())
	zw.Close()
	return out.Bytes()
}

// runBounded runs imgfab under the claim limits and returns its exit code, stderr, wall time
// and peak RSS. The peak comes from GNU time (%M): the rusage of a child started straight from
// this test would carry the test process's own high-water mark (Linux copies it into a vfork'ed
// child), and this test binary runs other, larger tests first.
func runBounded(t *testing.T, gnuTime string, args ...string) (int, string, time.Duration, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), claimMaxTime+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gnuTime, append([]string{"-f", "\nimgfab-maxrss-kib %M", imgfabBin}, args...)...)
	var se bytes.Buffer
	cmd.Stderr = &se
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running imgfab %v: %v", args, err)
	}
	stderr, stat, ok := strings.Cut(se.String(), "\nimgfab-maxrss-kib ")
	var kib int64
	if _, err := fmt.Sscan(stat, &kib); !ok || err != nil {
		t.Fatalf("imgfab %v: no peak RSS from GNU time in %q", args, se.String())
	}
	return code, strings.TrimSuffix(stderr, "Command exited with non-zero status "+fmt.Sprint(code)), took, kib << 10
}

// TestClaimedSizesBounded is the property test of issue #10: small real disks in every format
// imgfab reads, with header fields, table entries and tar headers replaced by random and extreme
// claims; inspect and convert (to qcow2 and to VMDK, whose writers work by the data) must each
// end within 60 s and 1 GiB, without a panic — an error is fine. IMGFAB_CLAIM_SEED and
// IMGFAB_CLAIM_N explore further.
func TestClaimedSizesBounded(t *testing.T) {
	gnuTime := testtool.Need(t, "time", "time")
	dir := t.TempDir()
	// A real disk: GPT, FAT ESP and ext4 root of the tiny boot image, then each format of it.
	src := testimage.WriteLayout(t, "c", testimage.GzipTar(t, testimage.BootEntries()))
	raw := filepath.Join(dir, "disk.raw")
	if r := runImgfab(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, "build", "--esp-size", "8MiB", "oci:"+src, "-o", raw); r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	seeds := map[string][]byte{}
	for _, f := range []string{"raw", "qcow2", "vmdk", "vhd", "vhd-dynamic", "gce"} {
		p := filepath.Join(dir, "seed."+f)
		if r := runImgfab(t, nil, "convert", "--format", f, raw, p); r.code != 0 {
			t.Fatalf("convert to %s: %s", f, r.stderr)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if f == "gce" { // the whole GiB of the real one would not fit the test's memory budget
			b = smallGCE(t, seeds["raw"])
		}
		if f == "raw" || f == "vhd" { // keep the small head of the sparse ones
			b = b[:min(len(b), 4<<20)]
		}
		if len(b) > claimMaxInput {
			t.Fatalf("seed %s is %d bytes, over the 10 MiB the property is about", f, len(b))
		}
		seeds[f] = b
	}
	seed, n := uint64(10), 12
	if s := os.Getenv("IMGFAB_CLAIM_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	if s := os.Getenv("IMGFAB_CLAIM_N"); s != "" {
		fmt.Sscan(s, &n)
	}
	rng := rand.New(rand.NewPCG(seed, 0x1ee7))
	ext := map[string]string{"raw": ".raw", "qcow2": ".qcow2", "vmdk": ".vmdk", "vhd": ".vhd", "vhd-dynamic": ".vhd", "gce": ".tar.gz"}
	var worstT time.Duration
	var worstRSS int64
	for _, f := range []string{"raw", "qcow2", "vmdk", "vhd", "vhd-dynamic", "gce"} {
		for i := range n {
			b := bytes.Clone(seeds[f])
			switch f {
			case "raw":
				mutateGPT(rng, b)
			case "gce":
				b = mutateGCE(t, rng, b)
			case "vhd":
				b = b[:len(b)-len(b)%512]
				mutateWords(rng, b, len(b)-512, len(b)-300, 1+rng.IntN(3))
			case "vhd-dynamic":
				mutateWords(rng, b, 0, 4096, 1+rng.IntN(3))
				mutateWords(rng, b, 0, 1<<16, rng.IntN(4))
			default: // qcow2, vmdk: header, then tables
				mutateWords(rng, b, 0, 512, 1+rng.IntN(3))
				mutateWords(rng, b, 0, 1<<18, rng.IntN(4))
			}
			in := filepath.Join(dir, fmt.Sprintf("in-%s-%d%s", f, i, ext[f]))
			if err := os.WriteFile(in, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if f == "vhd" { // a fixed VHD with a claimed footer keeps its data sparse
				os.Truncate(in, int64(len(b)))
			}
			for _, args := range [][]string{
				{"inspect", "--json", in},
				{"convert", in, filepath.Join(dir, "out.qcow2")},
				{"convert", in, filepath.Join(dir, "out.vmdk")},
			} {
				code, stderr, took, rss := runBounded(t, gnuTime, args...)
				worstT, worstRSS = max(worstT, took), max(worstRSS, rss)
				if code != 0 && code != 1 || strings.Contains(stderr, "panic:") || strings.Contains(stderr, "goroutine ") {
					t.Errorf("%s %s: exit %d (a crash?): %s", args[0], filepath.Base(in), code, tail(stderr, 2000))
				}
				if took > claimMaxTime || rss > claimMaxRSS {
					t.Errorf("%s %s: %v and %d MiB RSS, over the limits (60 s, 1 GiB): %s", args[0], filepath.Base(in), took, rss>>20, tail(stderr, 500))
				}
				if took > 10*time.Second {
					t.Logf("%s %s: slow, %v, %d MiB: %s", args[0], filepath.Base(in), took, rss>>20, tail(stderr, 300))
				}
			}
			os.Remove(filepath.Join(dir, "out.qcow2"))
			os.Remove(filepath.Join(dir, "out.vmdk"))
			os.Remove(in)
		}
	}
	t.Logf("seed %d, %d inputs per format: slowest run %v, highest peak RSS %d MiB", seed, n, worstT.Round(time.Millisecond), worstRSS>>20)
}
