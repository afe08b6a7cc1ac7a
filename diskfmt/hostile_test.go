package diskfmt

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Hostile images whose headers and tables claim far more than the file holds (issue #10, class
// 2). Each must be refused at open, or read within its real bytes. hostileImages also feeds the
// fuzz corpora (testdata/fuzz/FuzzOpen*/hostile-*; IMGFAB_WRITE_SEEDS=1 go test -run
// TestHostileSeeds ./diskfmt rewrites them).

// qcow2Hostile builds a version 3 qcow2 of 2^cb-byte clusters and the given virtual size: cluster
// 0 the header, cluster 1 the L1 table of l1 entries (also named as the one-cluster refcount
// table, which the reader does not read), then the clusters of tail (L2 tables, data).
func qcow2Hostile(cb uint, size uint64, l1 []uint64, tail []byte) []byte {
	be := binary.BigEndian
	c := int64(1) << cb
	h := make([]byte, c)
	copy(h, "QFI\xfb")
	be.PutUint32(h[4:], 3)                // version
	be.PutUint32(h[20:], uint32(cb))      // cluster_bits
	be.PutUint64(h[24:], size)            // size
	be.PutUint32(h[36:], uint32(len(l1))) // l1_size
	be.PutUint64(h[40:], uint64(c))       // l1_table_offset: cluster 1
	be.PutUint64(h[48:], uint64(c))       // refcount_table_offset
	be.PutUint32(h[56:], 1)               // refcount_table_clusters
	be.PutUint32(h[96:], 4)               // refcount_order
	be.PutUint32(h[100:], 104)            // header_length
	l1c := make([]byte, ceilDiv(int64(len(l1))*8, c)*c)
	for i, e := range l1 {
		be.PutUint64(l1c[i*8:], e)
	}
	return append(append(h, l1c...), tail...)
}

// qcow2SharedCluster is the case, scaled by cb: one L2 table whose every entry maps the
// same data cluster (cb 21: 512 GiB of guest data on one 2 MiB cluster, a 6 MiB file).
func qcow2SharedCluster(cb uint) []byte {
	c := int64(1) << cb
	ents := c / 8
	l2 := make([]byte, 2*c) // cluster 2: the L2 table; cluster 3: the data
	for j := int64(0); j < ents; j++ {
		binary.BigEndian.PutUint64(l2[j*8:], uint64(3*c)|qcowCopied)
	}
	copy(l2[c:], pattern(int(c), 7))
	return qcow2Hostile(cb, uint64(ents*c), []uint64{uint64(2*c) | qcowCopied}, l2)
}

// qcow2SharedCompressed maps every entry of one L2 table to the same deflate stream of one
// cluster (64 KiB clusters: 512 MiB of guest data from a 256 KiB file).
func qcow2SharedCompressed() []byte {
	const cb = 16
	c := int64(1) << cb
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestCompression)
	zw.Write(bytes.Repeat([]byte{0xa5}, int(c)))
	zw.Close()
	l2 := make([]byte, 2*c)
	x := uint(62 - (cb - 8))
	desc := qcowCompressed | uint64(3*c) | uint64((z.Len()+511)/512-1)<<x
	for j := int64(0); j < c/8; j++ {
		binary.BigEndian.PutUint64(l2[j*8:], desc)
	}
	copy(l2[c:], z.Bytes())
	return qcow2Hostile(cb, uint64(c/8*c), []uint64{uint64(2*c) | qcowCopied}, l2)
}

// qcow2SharedCompressedSmall is the same in 64 KiB (32 KiB clusters, 128 MiB of guest): the L1
// table is its own L2 table, its one entry also a compressed descriptor (the reader ignores bit
// 62 of an L1 entry), like the other 4095.
func qcow2SharedCompressedSmall() []byte {
	const cb = 15
	c := int64(1) << cb
	desc := qcowCompressed | uint64(c)
	l1 := make([]uint64, c/8)
	for j := range l1 {
		l1[j] = desc
	}
	b := qcow2Hostile(cb, uint64(c/8*c), l1, nil)
	binary.BigEndian.PutUint32(b[36:], 1) // l1_size: the first entry only
	return b
}

// qcow2Empty is an empty qcow2 of 2^56 bytes (2 MiB clusters: a 1 MiB L1 table, a 4 MiB file).
func qcow2Empty(size uint64) []byte {
	const cb = 21
	l1 := make([]uint64, ceilDiv(int64(size), (1<<cb)*(1<<cb)/8))
	b := qcow2Hostile(cb, size, l1, nil)
	return append(b, make([]byte, 4<<20-len(b))...)
}

// vmdkHostile builds a monolithicSparse extent (no descriptor) of grains of gs sectors and gtes
// entries per grain table: the header, the grain directory at sector 1 (gd), then body from
// sector 1+ceil(len(gd)*4/512).
func vmdkHostile(capacity, gs uint64, gtes uint32, flags uint32, gd []uint32, body []byte) []byte {
	le := binary.LittleEndian
	h := make([]byte, 512)
	copy(h, "KDMV")
	le.PutUint32(h[4:], 1)
	if flags&vmdkReadFlagCompressed != 0 {
		le.PutUint32(h[4:], 3)
		le.PutUint16(h[77:], 1)
	}
	le.PutUint32(h[8:], flags|1)
	le.PutUint64(h[12:], capacity)
	le.PutUint64(h[20:], gs) // grainSize
	le.PutUint32(h[44:], gtes)
	le.PutUint64(h[56:], 1) // gdOffset
	copy(h[73:], "\n \r\n")
	g := make([]byte, ceilDiv(int64(len(gd))*4, 512)*512)
	for i, e := range gd {
		le.PutUint32(g[i*4:], e)
	}
	return append(append(h, g...), body...)
}

// vmdkSharedGrain maps every grain of one grain table of gtes entries to one grain of gs sectors
// (4096 × 64 KiB: 256 MiB); stream makes the grains compressed, each a marker and zlib data.
func vmdkSharedGrain(stream bool, gs uint64, gtes uint32) []byte {
	le := binary.LittleEndian
	gt := make([]byte, gtes*4) // from sector 2; the grain after it
	at := uint32(2 + len(gt)/512)
	for j := range gtes {
		le.PutUint32(gt[j*4:], at)
	}
	grain := pattern(int(gs)*512, 9)
	flags := uint32(0)
	if stream {
		flags = vmdkReadFlagCompressed
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(grain)
		zw.Close()
		grain = le.AppendUint32(le.AppendUint64(nil, 0), uint32(z.Len())) // marker: lba, size
		grain = append(grain, z.Bytes()...)
	}
	return vmdkHostile(uint64(gtes)*gs, gs, gtes, flags, []uint32{2}, append(gt, grain...))
}

// vmdkOverlappingTables points n grain directory entries at n consecutive sectors: grain tables
// of gtes entries that overlap (1024 tables of 16 KiB: walking them would read 16 MiB from a
// 0.5 MiB file).
func vmdkOverlappingTables(n int, gtes uint32) []byte {
	gd := make([]uint32, n)
	first := 1 + uint32(ceilDiv(int64(n)*4, 512))
	for i := range gd {
		gd[i] = first + uint32(i)
	}
	return vmdkHostile(uint64(n)*uint64(gtes)*128, 128, gtes, 0, gd, make([]byte, n*512+int(gtes)*4))
}

// vhdSharedBlock is a dynamic VHD of 4096 blocks of 4 KiB, every BAT entry pointing at the same
// block.
func vhdSharedBlock() []byte {
	be := binary.BigEndian
	b, _ := tinyVHDDynamic()
	const n = 4096
	foot := bytes.Clone(b[len(b)-512:])
	be.PutUint64(foot[40:], n*4096)
	be.PutUint64(foot[48:], n*4096)
	be.PutUint32(foot[64:], vhdReadChecksum(foot, 64))
	hdr := bytes.Clone(b[512:1536])
	be.PutUint32(hdr[28:], n) // Max Table Entries
	be.PutUint32(hdr[36:], vhdReadChecksum(hdr, 36))
	bat := make([]byte, n*4) // sectors 3..34; the block's bitmap at 35
	for i := range n {
		be.PutUint32(bat[i*4:], 35)
	}
	blk := append(bytes.Repeat([]byte{0xff}, 512), pattern(4096, 3)...)
	return append(append(append(append(foot, hdr...), bat...), blk...), foot...)
}

// hostileCase is a reader case: it must be refused with a FormatError on field. seed cases (at
// most 64 KiB) are also in the fuzz corpus of target.
type hostileCase struct {
	target, name, field string
	data                []byte
	seed                bool
}

func hostileImages() []hostileCase {
	return []hostileCase{
		{"FuzzOpenQcow2", "shared-cluster-2m", "L2 entry", qcow2SharedCluster(21), false},
		{"FuzzOpenQcow2", "shared-cluster", "L2 entry", qcow2SharedCluster(12), true},
		{"FuzzOpenQcow2", "shared-compressed-64k", "L2 entry", qcow2SharedCompressed(), false},
		{"FuzzOpenQcow2", "shared-compressed", "L2 entry", qcow2SharedCompressedSmall(), true},
		{"FuzzOpenVMDK", "shared-grain-64k", "grain table entry", vmdkSharedGrain(false, 128, 4096), false},
		{"FuzzOpenVMDK", "shared-grain", "grain table entry", vmdkSharedGrain(false, 8, 512), true},
		{"FuzzOpenVMDK", "shared-grain-stream-64k", "grain table entry", vmdkSharedGrain(true, 128, 4096), false},
		{"FuzzOpenVMDK", "shared-grain-stream", "grain table entry", vmdkSharedGrain(true, 8, 512), true},
		{"FuzzOpenVMDK", "overlapping-tables-1024", "grain directory entry", vmdkOverlappingTables(1024, 4096), false},
		{"FuzzOpenVMDK", "overlapping-tables", "grain directory entry", vmdkOverlappingTables(64, 512), true},
		{"FuzzOpenVHD", "shared-block", "BAT entry", vhdSharedBlock(), true},
	}
}

// openHostile opens b and requires a FormatError on field, quickly and in little memory.
func openHostile(t *testing.T, name string, b []byte, field string) {
	t.Helper()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	img, err := OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err == nil {
		var total int64
		for _, e := range img.Extents() {
			total += e.Len
		}
		t.Fatalf("%s: opened (%s, %d bytes of extents from a %d-byte file), want a FormatError on %q", name, img.Format(), total, len(b), field)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&ms1)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Field != field {
		t.Fatalf("%s: %v, want a FormatError on %q", name, err, field)
	}
	if took > 2*time.Second || ms1.TotalAlloc-ms0.TotalAlloc > 64<<20 {
		t.Errorf("%s: refusing took %v and %d MiB", name, took, (ms1.TotalAlloc-ms0.TotalAlloc)>>20)
	}
	t.Logf("%s (%d bytes): %v", name, len(b), err)
}

// TestHostileSharedReferences: tables that map many guest units onto the same host bytes, or
// tables that overlap, are refused at open (class 2: "a 6 MiB qcow2 whose L2 table maps 512 GiB of
// guest data onto one host cluster converts forever").
func TestHostileSharedReferences(t *testing.T) {
	for _, h := range hostileImages() {
		openHostile(t, h.target+"/"+h.name, h.data, h.field)
	}
}

// TestHostileHugeEmptyToWriters: an empty qcow2 claiming 2^56 bytes opens (it holds nothing), and
// each writer either refuses the size before any work, naming the format, the size and its limit,
// or writes it in little time and memory (class 2: "converted to VMDK reaches 4-6 GiB RSS").
func TestHostileHugeEmptyToWriters(t *testing.T) {
	b := qcow2Empty(1 << 56)
	img, err := OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Extents()) != 0 || img.Size() != 1<<56 {
		t.Fatalf("size %d, extents %v", img.Size(), img.Extents())
	}
	for _, tc := range []struct{ format, limit string }{
		{"vmdk", "62 TiB"}, {"qcow2", "L1 entries"}, {"vhd", "2040 GiB"}, {"vhd-dynamic", "2040 GiB"},
	} {
		f, err := Lookup(tc.format)
		if err != nil {
			t.Fatal(err)
		}
		err = boundedRun(t, tc.format, 2*time.Second, 64<<20, func() error {
			return f.Write(context.Background(), io.Discard, img)
		})
		if err == nil || !strings.Contains(err.Error(), tc.format+":") || !strings.Contains(err.Error(), "72057594037927936") || !strings.Contains(err.Error(), tc.limit) {
			t.Errorf("%s: %v, want an error naming the format, the size and %q", tc.format, err, tc.limit)
		}
	}
	// At the VMDK limit, an empty disk is a small file: the grain directory (7.75 MiB) and headers.
	var n countingDiscard
	err = boundedRun(t, "vmdk 62 TiB", 5*time.Second, 64<<20, func() error {
		return vmdk{}.Write(context.Background(), &n, constDisk{size: vmdkMaxSize})
	})
	if err != nil || n > 9<<20 {
		t.Errorf("vmdk of an empty 62 TiB disk: %v, %d bytes", err, n)
	}
}

// boundedRun runs fn and fails t when it takes longer than d or allocates more than mem bytes.
func boundedRun(t *testing.T, what string, d time.Duration, mem uint64, fn func() error) error {
	t.Helper()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	err := fn()
	took := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if took > d || ms1.TotalAlloc-ms0.TotalAlloc > mem {
		t.Errorf("%s: took %v and allocated %d MiB, want at most %v and %d MiB (err %v)", what, took, (ms1.TotalAlloc-ms0.TotalAlloc)>>20, d, mem>>20, err)
	}
	return err
}

// TestHostileSeeds checks that the committed hostile fuzz seeds are the ones generated here and
// rewrites them with IMGFAB_WRITE_SEEDS=1.
func TestHostileSeeds(t *testing.T) {
	for _, h := range hostileImages() {
		if !h.seed {
			continue
		}
		if len(h.data) > 64<<10 {
			t.Errorf("%s/%s: %d bytes, keep seeds under 64 KiB", h.target, h.name, len(h.data))
		}
		p := filepath.Join("testdata", "fuzz", h.target, "hostile-"+h.name)
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(h.data)) + ")\n"
		if os.Getenv("IMGFAB_WRITE_SEEDS") == "1" {
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != body {
			t.Errorf("%s: missing or stale (%v); regenerate with IMGFAB_WRITE_SEEDS=1", p, err)
		}
	}
}
