package inspect

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/partition"
)

// TestClaimedSizesBounded is the property of doc.go "# Security": whatever a partition table,
// boot sector, FAT or superblock claims, Inspect costs time and memory bounded by the disk's real
// bytes. The 8 MiB GPT disk of the fuzz target (the same disk with an MBR, and the disk claiming
// 1 PiB, the rest zeros) gets fields of its tables and filesystems overwritten with extreme and random values, seeded, the GPT CRCs fixed
// after most cases; each case must give a report or an error, never panic, within 3 s and 256 MiB.
func TestClaimedSizesBounded(t *testing.T) {
	gpt := smallDisk(t)
	for _, base := range []struct {
		name string
		b    []byte
		size int64 // the virtual size the image claims; the bytes past b read as zeros
	}{{"gpt", gpt, int64(len(gpt))}, {"mbr", mbrVariant(t, gpt), int64(len(gpt))}, {"gpt-1pib", gpt, 1 << 50}} {
		t.Run(base.name, func(t *testing.T) {
			groups := append(diskFields(t, base.b), diskWords(base.b))
			rng := rand.New(rand.NewPCG(11, uint64(len(base.name))))
			b := bytes.Clone(base.b)
			var stats [3]int // errors, reports without an OS, reports with one
			for i := range 600 {
				muts := mutateDisk(rng, b, groups)
				if rng.IntN(2) == 0 {
					b[len(b)-512] ^= 0xff // no backup GPT header: the primary's fields count
				}
				if rng.IntN(4) != 0 {
					fixGPT(b, 512)
					fixGPT(b, int64(len(b))-512)
				}
				rep, err := inspectCase(b, base.size)
				if err != nil {
					t.Fatalf("case %d, %s: %v", i, muts, err)
				}
				stats[min(rep.n, 2)]++
				copy(b, base.b)
			}
			t.Logf("%d errors, %d reports without the OS, %d complete", stats[0], stats[1], stats[2])
		})
	}
}

// diskField is a little-endian number of n bytes at off.
type diskField struct {
	name string
	off  int64
	n    int
}

func (f diskField) get(b []byte) uint64 {
	var v uint64
	for i := range f.n {
		v |= uint64(b[f.off+int64(i)]) << (8 * i)
	}
	return v
}

func (f diskField) put(b []byte, v uint64) {
	for i := range f.n {
		b[f.off+int64(i)] = byte(v >> (8 * i))
	}
}

// mutateDisk overwrites one to three fields, each of a group picked first, with extreme, random,
// nearby or copied values.
func mutateDisk(rng *rand.Rand, b []byte, groups [][]diskField) string {
	var desc []string
	for range 1 + rng.IntN(3) {
		g := groups[rng.IntN(len(groups))]
		f := g[rng.IntN(len(g))]
		old := f.get(b)
		var v uint64
		switch rng.IntN(8) {
		case 0, 1, 2:
			v = []uint64{0, 1, 1 << 31, 1<<32 - 8, 1<<32 - 1, math.MaxInt64, math.MaxUint64 - 7, math.MaxUint64, 1 << 40}[rng.IntN(9)]
		case 3, 4:
			v = rng.Uint64() >> rng.IntN(64)
		case 5, 6:
			v = old + uint64(rng.IntN(9)) - 4
		default:
			v = g[rng.IntN(len(g))].get(b)
		}
		f.put(b, v)
		desc = append(desc, fmt.Sprintf("%s@%#x=%#x (was %#x)", f.name, f.off, f.get(b), old))
	}
	return fmt.Sprint(desc)
}

// fixGPT recomputes the entry array and header CRCs of the GPT header at hdr, when the header
// still names an array inside the disk (UEFI 2.10 §5.3.2).
func fixGPT(b []byte, hdr int64) {
	h := b[hdr : hdr+512]
	if string(h[:8]) != gptSig {
		return
	}
	lba, n, es := le.Uint64(h[72:]), uint64(le.Uint32(h[80:])), uint64(le.Uint32(h[84:]))
	if es <= 4096 && n <= 1<<20/max(es, 1) && lba < uint64(len(b))/512 && lba*512+n*es <= uint64(len(b)) {
		le.PutUint32(h[88:], crc32.ChecksumIEEE(b[lba*512:lba*512+n*es]))
	}
	if hs := le.Uint32(h[12:]); hs >= 92 && hs <= 512 {
		le.PutUint32(h[16:], 0)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
	}
}

// inspectCase runs Inspect on b within the bounds of the property; a panic is an error. It says
// how far Inspect got: 0 an error, 1 a report without the OS, 2 a report with it.
func inspectCase(b []byte, size int64) (res struct{ n int }, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	var img diskfmt.Image = bigImage{b, size}
	if size == int64(len(b)) {
		if img, err = diskfmt.OpenReaderAt(bytes.NewReader(b), size); err != nil {
			return res, err
		}
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	rep, ierr := Inspect(context.Background(), img)
	took := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; took > 3*time.Second || alloc > 256<<20 {
		return res, fmt.Errorf("Inspect took %v and allocated %d MiB", took, alloc>>20)
	}
	switch {
	case ierr != nil:
	case rep.OS == nil:
		res.n = 1
	default:
		res.n = 2
	}
	return res, nil
}

// mbrVariant is the GPT disk with its GPT headers cleared and an MBR (package partition's
// writer) for the same two partitions.
func mbrVariant(t *testing.T, gpt []byte) []byte {
	b := bytes.Clone(gpt)
	img, err := diskfmt.OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := readTable(img, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	l := partition.Layout{Size: int64(len(b))}
	for _, p := range tab.parts {
		l.Partitions = append(l.Partitions, partition.Partition{Name: p.Name, Type: p.TypeGUID, Offset: p.Offset, Size: p.Size})
	}
	clear(b[512:1024])
	clear(b[len(b)-512:])
	if err := partition.WriteMBR(sliceWriterAt(b), l, 0x12345678, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// bigImage is a raw image that claims size bytes, of which b holds the first (as a sparse qcow2
// or a GCE tarball of a huge disk would): the rest reads as zeros.
type bigImage struct {
	b    []byte
	size int64
}

func (g bigImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= g.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), g.size-off))
	clear(p[:n])
	if off < int64(len(g.b)) {
		copy(p[:n], g.b[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (g bigImage) Size() int64               { return g.size }
func (g bigImage) Extents() []diskfmt.Extent { return []diskfmt.Extent{{Off: 0, Len: int64(len(g.b))}} }
func (g bigImage) Format() string            { return "raw" }
func (g bigImage) Close() error              { return nil }

type sliceWriterAt []byte

func (s sliceWriterAt) WriteAt(p []byte, off int64) (int, error) { return copy(s[off:], p), nil }

// diskFields lists what a mutation may hit, in groups: the MBR entries, each GPT header, the GPT
// entries, the ESP's boot sector, its first FAT sector, its directory entries, and the root
// filesystem's superblock.
func diskFields(t *testing.T, b []byte) [][]diskField {
	var groups [][]diskField
	var fs []diskField
	next := func() { groups, fs = append(groups, fs), nil }
	for i := int64(0); i < 4; i++ {
		e := 446 + 16*i
		fs = append(fs, diskField{"MBR type", e + 4, 1}, diskField{"MBR start", e + 8, 4}, diskField{"MBR count", e + 12, 4})
	}
	next()
	for _, h := range []int64{512, int64(len(b)) - 512} {
		for _, f := range []struct {
			name string
			off  int64
			n    int
		}{{"HeaderSize", 12, 4}, {"MyLBA", 24, 8}, {"AlternateLBA", 32, 8}, {"FirstUsableLBA", 40, 8},
			{"LastUsableLBA", 48, 8}, {"PartitionEntryLBA", 72, 8}, {"NumberOfPartitionEntries", 80, 4}, {"SizeOfPartitionEntry", 84, 4}} {
			fs = append(fs, diskField{"GPT " + f.name, h + f.off, f.n})
		}
		next()
	}
	for i := int64(0); i < 4; i++ {
		e := 1024 + 128*i
		fs = append(fs, diskField{"GPT entry type", e, 4}, diskField{"GPT StartingLBA", e + 32, 8}, diskField{"GPT EndingLBA", e + 40, 8})
	}
	next()
	const esp, root = 1 << 20, 2 << 20 // smallDisk's partitions
	for _, f := range []struct {
		name string
		off  int64
		n    int
	}{{"BytsPerSec", 11, 2}, {"SecPerClus", 13, 1}, {"RsvdSecCnt", 14, 2}, {"NumFATs", 16, 1}, {"RootEntCnt", 17, 2},
		{"TotSec16", 19, 2}, {"FATSz16", 22, 2}, {"TotSec32", 32, 4}, {"FATSz32", 36, 4}, {"RootClus", 44, 4}} {
		fs = append(fs, diskField{"FAT " + f.name, esp + f.off, f.n})
	}
	next()
	f, err := openFAT(bytes.NewReader(b[esp:root]), root-esp)
	if err != nil {
		t.Fatal(err)
	}
	for o := int64(0); o < 512; o += 2 {
		fs = append(fs, diskField{"FAT entry", esp + f.fatOff + o, 2})
	}
	next()
	dirs := []int64{esp + f.rootOff}
	for _, p := range []string{"loader", "loader/entries", "EFI", "EFI/BOOT"} {
		if e, err := f.lookup(p); err == nil {
			dirs = append(dirs, esp+f.dataOff+(e.clus-2)*f.clusBytes)
		}
	}
	for _, d := range dirs {
		for e := d; e < d+512; e += 32 {
			fs = append(fs, diskField{"dir entry cluster", e + 26, 2}, diskField{"dir entry size", e + 28, 4}, diskField{"dir entry attr", e + 11, 1})
		}
	}
	next()
	sb := int64(root + 1024) // ext4 superblock (Linux Documentation/filesystems/ext4, "Super Block")
	for _, f := range []struct {
		name string
		off  int64
		n    int
	}{{"s_inodes_count", 0, 4}, {"s_blocks_count_lo", 4, 4}, {"s_first_data_block", 20, 4}, {"s_log_block_size", 24, 4},
		{"s_blocks_per_group", 32, 4}, {"s_inodes_per_group", 40, 4}, {"s_inode_size", 88, 2}, {"s_feature_incompat", 96, 4},
		{"s_first_meta_bg", 260, 4}, {"s_desc_size", 254, 2}, {"s_blocks_count_hi", 336, 4}} {
		fs = append(fs, diskField{"ext4 " + f.name, sb + f.off, f.n})
	}
	next()
	return groups
}

// diskWords lists a word every 64 bytes of each non-zero sector: anywhere (directories, inodes,
// extent trees, files).
func diskWords(b []byte) []diskField {
	var fs []diskField
	for s := int64(0); s*512 < int64(len(b)); s++ {
		if sec := b[s*512 : (s+1)*512]; !bytes.Equal(sec, make([]byte, 512)) {
			for o := int64(0); o < 512; o += 64 {
				fs = append(fs, diskField{"word", s*512 + o, 4})
			}
		}
	}
	return fs
}
