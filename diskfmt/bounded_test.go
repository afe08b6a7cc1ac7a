package diskfmt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestClaimedSizesBounded is the property of doc.go "# Limits": whatever a header or table claims,
// opening an image and reading all it reports costs time and memory bounded by the file's bytes.
// Small real images (this package's writers on a small patterned disk, and the hand-made sparse
// VMDK and dynamic VHD) get header fields and table entries overwritten with extreme and random
// values, seeded; each case must open or fail, never panic, report extents of at most what the file
// can hold (twice the file, or 2 × 1032 × the file for compressed units), and copy them all through
// ReadAt within 3 s and 256 MiB. A test fails on the readers before they bounded their tables by
// the file (an L2 table, grain table or BAT whose entries all map one unit).
func TestClaimedSizesBounded(t *testing.T) {
	for _, base := range boundedBases(t) {
		t.Run(base.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(10, uint64(len(base.name))))
			b := bytes.Clone(base.data)
			opened := 0
			for i := range 500 {
				muts := mutate(rng, b, base.fields)
				if rng.IntN(4) != 0 && base.fix != nil {
					base.fix(b)
				}
				ok, err := boundedCase(b, base.ratio)
				if err != nil {
					t.Fatalf("case %d, %s: %v", i, muts, err)
				}
				if ok {
					opened++
				}
				copy(b, base.data) // only a few bytes changed, but the fix may touch others
			}
			t.Logf("%d of 500 cases opened", opened)
		})
	}
}

// boundedBase is a valid image, the fields a mutation may hit and the checksums to fix after.
type boundedBase struct {
	name   string
	data   []byte
	fields []field
	fix    func(b []byte)
	ratio  int64 // guest bytes the file may give per byte: 1 (plain units) or maxInflateRatio
}

// field is a number in an image: its offset, width in bytes and byte order.
type field struct {
	name string
	off  int64
	n    int
	be   bool
}

func (f field) get(b []byte) uint64 {
	p := b[f.off : f.off+int64(f.n)]
	var v uint64
	for i := range f.n {
		k := i
		if f.be {
			k = f.n - 1 - i
		}
		v |= uint64(p[k]) << (8 * i)
	}
	return v
}

func (f field) put(b []byte, v uint64) {
	p := b[f.off : f.off+int64(f.n)]
	for i := range f.n {
		k := i
		if f.be {
			k = f.n - 1 - i
		}
		p[k] = byte(v >> (8 * i))
	}
}

// mutate overwrites one to three fields of b with extreme, random, nearby or copied values, or a
// run of entries of one table with one value (shared references), and describes what it did.
func mutate(rng *rand.Rand, b []byte, fields []field) string {
	var desc []string
	for range 1 + rng.IntN(3) {
		i := rng.IntN(len(fields))
		f := fields[i]
		old := f.get(b)
		var v uint64
		switch k := rng.IntN(12); k {
		case 0, 1, 2:
			v = []uint64{0, 1, 1 << 31, 1<<32 - 8, 1<<32 - 1, math.MaxInt64, math.MaxUint64 - 7, math.MaxUint64, 1 << 47, 1 << 56}[rng.IntN(10)]
		case 3, 4:
			v = rng.Uint64()
		case 5:
			v = rng.Uint64() >> rng.IntN(64)
		case 6, 7:
			v = old + uint64(rng.IntN(9)) - 4
		case 8, 9: // another entry's value: a shared reference
			v = fields[rng.IntN(len(fields))].get(b)
		default: // the next entries of the same table all take the value of one in use
			for try := 0; old == 0 && try < 256; try++ {
				if g := fields[rng.IntN(len(fields))]; g.name == f.name {
					old = g.get(b)
				}
			}
			n := 0
			for ; i+n < len(fields) && fields[i+n].name == f.name && n < 1<<14; n++ {
				fields[i+n].put(b, old)
			}
			desc = append(desc, fmt.Sprintf("%d×%s@%#x=%#x", n, f.name, f.off, old))
			continue
		}
		f.put(b, v)
		desc = append(desc, fmt.Sprintf("%s@%#x=%#x (was %#x)", f.name, f.off, f.get(b), old))
	}
	return fmt.Sprint(desc)
}

// boundedCase opens b and reads everything it reports, within the bounds of the property.
func boundedCase(b []byte, ratio int64) (opened bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	opened, err = openAndCopy(b, ratio)
	took := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; took > 3*time.Second || alloc > 256<<20 {
		return opened, fmt.Errorf("took %v and allocated %d MiB (%v)", took, alloc>>20, err)
	}
	return opened, err
}

var copyBuf = make([]byte, 1<<20)

// openAndCopy opens b and copies every extent to io.Discard; a refused image or a read error is
// fine, too much reported data is not. It says whether b opened.
func openAndCopy(b []byte, ratio int64) (bool, error) {
	img, err := OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return false, nil
	}
	defer img.Close()
	if err := checkDisk(img); err != nil {
		return true, fmt.Errorf("%s: %v", img.Format(), err)
	}
	var total int64
	for _, e := range img.Extents() {
		total += e.Len
	}
	if limit := 2 * ratio * int64(len(b)); total > limit {
		return true, fmt.Errorf("%s: extents total %d bytes, more than the %d a %d-byte file can hold", img.Format(), total, limit, len(b))
	}
	for _, e := range img.Extents() {
		for off := e.Off; off < e.End(); {
			n := min(e.End()-off, int64(len(copyBuf)))
			if _, err := img.ReadAt(copyBuf[:n], off); err != nil {
				return true, nil
			}
			io.Discard.Write(copyBuf[:n])
			off += n
		}
	}
	return true, nil
}

// patternDisk is a sparse disk: non-zero bytes (a function of the offset) in its extents, zeros
// elsewhere.
type patternDisk struct {
	size int64
	exts []Extent
}

func (d patternDisk) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for _, e := range d.exts {
		for o := max(e.Off, off); o < min(e.End(), off+int64(len(p))); o++ {
			p[o-off] = byte(uint32(o)*2654435761>>24) | 1
		}
	}
	return len(p), nil
}
func (d patternDisk) Size() int64       { return d.size }
func (d patternDisk) Extents() []Extent { return d.exts }

// boundedBases writes a sparse 1 GiB disk (data in three places, one not cluster-aligned, 300 KiB
// in all) in each format this package writes (fixed VHD: a 2 MiB disk), and adds the hand-made
// sparse VMDK and dynamic VHD. The virtual size is far beyond the file, as a hostile header would
// claim, so a table whose entries all map the same data claims far more than the file holds.
func boundedBases(t *testing.T) []boundedBase {
	exts := []Extent{{0, 64 << 10}, {700<<10 + 123, 100 << 10}, {600 << 20, 128 << 10}}
	write := func(f Format, d Disk) []byte {
		var buf bytes.Buffer
		if err := f.Write(context.Background(), &buf, d); err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		return buf.Bytes()
	}
	big, small := patternDisk{1 << 30, exts}, patternDisk{2 << 20, exts[:2]}
	vhdDyn, _ := tinyVHDDynamic()
	var bases []boundedBase
	for _, q := range []struct {
		name string
		f    qcow2
	}{{"qcow2", qcow2{}}, {"qcow2-deflate", qcow2{compress: compressDeflate}}, {"qcow2-zstd", qcow2{compress: compressZstd}}} {
		b := write(q.f, big)
		ratio := int64(1)
		if q.f.compress != compressNone {
			ratio = maxInflateRatio
		}
		bases = append(bases, boundedBase{q.name, b, qcow2Fields(b), nil, ratio})
	}
	for _, v := range []struct {
		name  string
		b     []byte
		ratio int64
	}{{"vmdk-stream", write(vmdk{}, big), maxInflateRatio}, {"vmdk-sparse", sparseVMDK(), 1},
		{"vmdk-sparse-tiny", tinyVMDK(false), 1}, {"vmdk-stream-tiny", tinyVMDK(true), maxInflateRatio}} {
		bases = append(bases, boundedBase{v.name, v.b, vmdkFields(v.b), nil, v.ratio})
	}
	for _, v := range []struct {
		name string
		b    []byte
	}{{"vhd", write(vhdFixed{}, small)}, {"vhd-dynamic", write(vhdDynamic{}, big)}, {"vhd-dynamic-tiny", vhdDyn}} {
		bases = append(bases, boundedBase{v.name, v.b, vhdFields(v.b), vhdFixAll, 1})
	}
	return bases
}

// sparseVMDK is a 1 GiB monolithicSparse extent (64 KiB grains, 4096 entries per grain table) with
// grains 0, 11 and 9600 allocated: grain tables 0 and 2.
func sparseVMDK() []byte {
	le := binary.LittleEndian
	const gtSecs, grainSecs = 4096 * 4 / 512, 128
	body := make([]byte, 2*gtSecs*512) // from sector 2: the two grain tables, then the grains
	next := uint32(2 + 2*gtSecs)
	for _, g := range []int{0, 11, 9600} {
		t := g / 4096 / 2 // grain table 0 or 2: the first or second in body
		le.PutUint32(body[t*gtSecs*512+g%4096*4:], next)
		body = append(body, pattern(grainSecs*512, byte(g))...)
		next += grainSecs
	}
	return vmdkHostile(1<<30/512, grainSecs, 4096, 0, []uint32{2, 0, 2 + gtSecs, 0}, body)
}

// qcow2Fields: the header (qcow2.rst "Header"), every L1 entry and every entry of the L2 tables.
func qcow2Fields(b []byte) []field {
	fs := []field{{"version", 4, 4, true}, {"backing_file_offset", 8, 8, true}, {"cluster_bits", 20, 4, true},
		{"size", 24, 8, true}, {"crypt_method", 32, 4, true}, {"l1_size", 36, 4, true}, {"l1_table_offset", 40, 8, true},
		{"refcount_table_offset", 48, 8, true}, {"refcount_table_clusters", 56, 4, true}, {"incompatible_features", 72, 8, true},
		{"header_length", 100, 4, true}, {"compression_type", 104, 1, true}}
	be := binary.BigEndian
	l1, n := int64(be.Uint64(b[40:])), int64(be.Uint32(b[36:]))
	for i := range n {
		fs = append(fs, field{"L1 entry", l1 + i*8, 8, true})
		if l2 := int64(be.Uint64(b[l1+i*8:]) & qcowOffMask); l2 != 0 {
			for j := range int64(qcowL2Entries) {
				fs = append(fs, field{"L2 entry", l2 + j*8, 8, true})
			}
		}
	}
	return fs
}

// vmdkFields: the header (and the footer of a stream), the grain directory, the grain tables and
// each grain's marker.
func vmdkFields(b []byte) []field {
	le := binary.LittleEndian
	hdr := func(at int64, what string) []field {
		return []field{{what + " version", at + 4, 4, false}, {what + " flags", at + 8, 4, false},
			{what + " capacity", at + 12, 8, false}, {what + " grainSize", at + 20, 8, false},
			{what + " descriptorOffset", at + 28, 8, false}, {what + " descriptorSize", at + 36, 8, false},
			{what + " numGTEsPerGT", at + 44, 4, false}, {what + " gdOffset", at + 56, 8, false},
			{what + " compressAlgorithm", at + 77, 2, false}}
	}
	fs := hdr(0, "header")
	at := int64(0)
	if le.Uint64(b[56:]) == vmdkReadGDAtEnd {
		at = int64(len(b)) - 1024
		fs = append(fs, hdr(at, "footer")...)
	}
	gd := int64(le.Uint64(b[at+56:])) * 512
	grain, gtes := int64(le.Uint64(b[20:]))*512, int64(le.Uint32(b[44:]))
	n := ceilDiv(int64(le.Uint64(b[12:]))*512, grain*gtes)
	for i := range n {
		fs = append(fs, field{"grain directory entry", gd + i*4, 4, false})
		gt := int64(le.Uint32(b[gd+i*4:])) * 512
		if gt == 0 {
			continue
		}
		for j := range gtes {
			fs = append(fs, field{"grain table entry", gt + j*4, 4, false})
			if s := int64(le.Uint32(b[gt+j*4:])) * 512; s > 512 && le.Uint32(b[8:])&vmdkReadFlagCompressed != 0 {
				fs = append(fs, field{"grain marker lba", s, 8, false}, field{"grain marker size", s + 8, 4, false})
			}
		}
	}
	return fs
}

// vhdFields: the footer (and its copy), the dynamic header and the BAT (VHD spec "Hard Disk Footer
// Format", "Dynamic Disk Header Format").
func vhdFields(b []byte) []field {
	be := binary.BigEndian
	foot := func(at int64) []field {
		return []field{{"footer version", at + 12, 4, true}, {"footer data offset", at + 16, 8, true},
			{"footer current size", at + 48, 8, true}, {"footer disk type", at + 60, 4, true}}
	}
	end := int64(len(b)) - 512
	fs := foot(end)
	if be.Uint32(b[end+60:]) != 3 {
		return fs
	}
	fs = append(fs, foot(0)...)
	h := int64(be.Uint64(b[16:]))
	fs = append(fs, field{"table offset", h + 16, 8, true}, field{"header version", h + 24, 4, true},
		field{"max table entries", h + 28, 4, true}, field{"block size", h + 32, 4, true})
	bat, n := int64(be.Uint64(b[h+16:])), int64(be.Uint32(b[h+28:]))
	for i := range n {
		fs = append(fs, field{"BAT entry", bat + i*4, 4, true})
	}
	return fs
}

// vhdFixAll recomputes the checksums a mutation broke, so that it reaches past them.
func vhdFixAll(b []byte) {
	be := binary.BigEndian
	end := int64(len(b)) - 512
	fix := func(at, ck int64, n int) {
		if at >= 0 && at+int64(n) <= int64(len(b)) {
			be.PutUint32(b[at+ck:], vhdReadChecksum(b[at:at+int64(n)], int(ck)))
		}
	}
	fix(end, 64, 512)
	if string(b[:8]) == "conectix" {
		fix(0, 64, 512)
		if h := int64(be.Uint64(b[16:])); h >= 0 && h <= int64(len(b))-1024 && string(b[h:h+8]) == "cxsparse" {
			fix(h, 36, 1024)
		}
	}
}
