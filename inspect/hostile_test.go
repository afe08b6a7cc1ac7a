package inspect

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/partition"
)

// Hostile disks whose tables claim more than the disk holds (issue #10, classes 1 and 2).

// gptHeaderDisk is a size-byte raw disk with a protective MBR and a primary GPT header at LBA 1
// claiming n entries of esize bytes at LBA 2, its HeaderCRC32 valid (UEFI 2.10 §5.3.2).
func gptHeaderDisk(size int64, n, esize uint32) []byte {
	b := make([]byte, size)
	copy(b[446:], []byte{0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF})
	b[510], b[511] = 0x55, 0xAA
	h := b[512:1024]
	copy(h, gptSig)
	le.PutUint32(h[8:], 0x00010000)                  // Revision
	le.PutUint32(h[12:], 92)                         // HeaderSize
	le.PutUint64(h[24:], 1)                          // MyLBA
	le.PutUint64(h[32:], uint64(size/512-1))         // AlternateLBA
	le.PutUint64(h[40:], 34)                         // FirstUsableLBA
	le.PutUint64(h[48:], uint64(size/512-34))        // LastUsableLBA
	le.PutUint64(h[72:], 2)                          // PartitionEntryLBA
	le.PutUint32(h[80:], n)                          // NumberOfPartitionEntries
	le.PutUint32(h[84:], esize)                      // SizeOfPartitionEntry
	le.PutUint32(h[88:], crc32.ChecksumIEEE(nil))    // PartitionEntryArrayCRC32
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92])) // HeaderCRC32
	return b
}

// inspectBytes runs Inspect on a raw disk held in b, failing t when it takes more than 2 s or
// allocates more than 256 MiB; a panic fails the test binary.
func inspectBytes(t *testing.T, what string, b []byte) (Report, error) {
	t.Helper()
	img, err := diskfmt.OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	rep, err := Inspect(context.Background(), img)
	took := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; took > 2*time.Second || alloc > 256<<20 {
		t.Errorf("%s: Inspect took %v and allocated %d MiB", what, took, alloc>>20)
	}
	return rep, err
}

// TestGPTEntryCountOverflow is class 1: a CRC-valid GPT header claiming 2^32-1 entries of 2^32-8
// bytes made n*esize wrap past the size check and panic in makeslice. Every combination of huge
// fields must be an error naming them.
func TestGPTEntryCountOverflow(t *testing.T) {
	for _, c := range []struct{ n, esize uint32 }{
		{1<<32 - 1, 1<<32 - 8}, {1<<32 - 1, 1<<31 + 8}, {1<<32 - 1, 128}, {1, 1<<32 - 8}, {1 << 31, 1 << 31}, {8193, 128},
	} {
		what := fmt.Sprintf("%d entries of %d bytes", c.n, c.esize)
		_, err := inspectBytes(t, what, gptHeaderDisk(1<<20, c.n, c.esize))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d entries of %d bytes", c.n, c.esize)) {
			t.Errorf("%s: %v, want an error naming both fields", what, err)
		}
	}
}

// fat12Shared builds a 4 MiB FAT12 filesystem (2 KiB clusters) whose loader/entries directory
// (1 MiB: 16384 long-name entries) names one 1 MiB file 16384 times: each file read alone is
// within the reader's limits, together they were 16 GiB of reads, and each lookup re-read the
// directory ([fatgen §3.1, §6, §7]).
func fat12Shared() []byte {
	const size, spc, fatSecs = 4 << 20, 4, 6
	b := make([]byte, size)
	copy(b[3:], "MSWIN4.1")
	le.PutUint16(b[11:], 512)      // BPB_BytsPerSec
	b[13] = spc                    // BPB_SecPerClus
	le.PutUint16(b[14:], 1)        // BPB_RsvdSecCnt
	b[16] = 1                      // BPB_NumFATs
	le.PutUint16(b[17:], 16)       // BPB_RootEntCnt: one sector
	le.PutUint16(b[19:], size/512) // BPB_TotSec16
	le.PutUint16(b[22:], fatSecs)  // BPB_FATSz16
	copy(b[54:], "FAT12   ")       // BS_FilSysType
	b[510], b[511] = 0x55, 0xAA
	const data = (1 + fatSecs + 1) * 512 // cluster 2
	clus := func(c int) []byte { return b[data+(c-2)*spc*512:][:spc*512] }
	setFAT := func(c, v int) { // FAT12: 1.5 bytes per entry [fatgen §4]
		o := 512 + c + c/2
		if c%2 == 0 {
			b[o], b[o+1] = byte(v), b[o+1]&0xF0|byte(v>>8)
		} else {
			b[o], b[o+1] = b[o]&0x0F|byte(v<<4), byte(v>>4)
		}
	}
	chain := func(first, n int) {
		for c := first; c < first+n-1; c++ {
			setFAT(c, c+1)
		}
		setFAT(first+n-1, 0xFFF)
	}
	dirent := func(e []byte, name string, attr byte, c, size int) {
		copy(e, fmt.Sprintf("%-11s", name))
		e[11] = attr
		le.PutUint16(e[26:], uint16(c))
		le.PutUint32(e[28:], uint32(size))
	}
	setFAT(0, 0xFF8)
	setFAT(1, 0xFFF)
	dirent(b[(1+fatSecs)*512:], "LOADER", 0x10, 2, 0)
	chain(2, 1)
	dirent(clus(2), "ENTRIES", 0x10, 3, 0)
	const dirClus, fileClus = 512, 512
	chain(3, dirClus)
	chain(3+dirClus, fileClus)
	copy(clus(3+dirClus), "title shared\n")
	for i := 0; i < dirClus*spc*512/64; i++ {
		e := b[data+spc*512+i*64:][:64]
		short := fmt.Sprintf("E%07d", i) + "CON"
		var sum byte
		for _, c := range []byte(short) {
			sum = (sum&1)<<7 + sum>>1 + c
		}
		e[0], e[11], e[13] = 0x41, 0x0F, sum // the last (and only) long-name part
		u := utf16.Encode([]rune(fmt.Sprintf("%07d.conf", i) + "\x00\uffff\uffff"))
		for k, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
			le.PutUint16(e[o:], u[k])
		}
		dirent(e[32:], short, 0x20, 3+dirClus, fileClus*spc*512)
	}
	return b
}

// espDisk puts fsys into the ESP (the only partition) of a GPT disk written by package partition.
func espDisk(t *testing.T, fsys []byte) []byte {
	l, err := partition.Plan(0, "11111111-2222-4333-8444-555555555555", []partition.Spec{
		{Name: "esp", Type: partition.TypeESP, GUID: "11111111-2222-4333-8444-666666666666", Size: int64(len(fsys))},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		t.Fatal(err)
	}
	if err := partition.WriteGPT(f, l); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(fsys, l.Partitions[0].Offset); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFATSharedClusters: 16384 directory entries naming one 1 MiB file are read within the FAT
// reader's budget, and the report says so instead of reading 16 GiB.
func TestFATSharedClusters(t *testing.T) {
	rep, err := inspectBytes(t, "shared ESP", espDisk(t, fat12Shared()))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Boot == nil || !strings.Contains(strings.Join(rep.Warnings, "\n"), "budget") {
		t.Fatalf("report %+v, want a warning about the FAT reader's budget", rep)
	}
	if n := len(strings.Join(rep.Warnings, "\n")); n > 64<<10 {
		t.Errorf("warnings of %d bytes", n)
	}
}

// TestFATChainLoop: a file whose cluster chain loops back on itself and whose size claims 4 GiB,
// read at a far offset (a PE string table at 3.75 GiB), is found looping at once rather than after
// walking the claimed size.
func TestFATChainLoop(t *testing.T) {
	b := smallDisk(t)
	esp := b[1<<20 : 2<<20]
	f, err := openFAT(bytes.NewReader(esp), int64(len(esp)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := f.lookup("EFI/BOOT/BOOTX64.EFI")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(esp, []byte("BOOTX64 EFI"))
	if i < 0 || f.bits != 12 {
		t.Fatalf("no BOOTX64 EFI entry (%d) or not FAT12 (%d)", i, f.bits)
	}
	le.PutUint32(esp[i+28:], 0xFFFFFF00) // DIR_FileSize
	c := e.clus
	o := f.fatOff + c + c/2 // FAT12 entry of c: c itself
	if c%2 == 0 {
		esp[o], esp[o+1] = byte(c), esp[o+1]&0xF0|byte(c>>8)
	} else {
		esp[o], esp[o+1] = esp[o]&0x0F|byte(c<<4), byte(c>>4)
	}
	// A PE header (PE/COFF §3, §3.3) whose COFF symbol table lies at 3.75 GiB.
	pe := esp[f.dataOff+(c-2)*f.clusBytes:][:f.clusBytes]
	clear(pe)
	copy(pe, "MZ")
	le.PutUint32(pe[0x3c:], 0x40)
	copy(pe[0x40:], "PE\x00\x00")
	le.PutUint16(pe[0x44:], 0x8664)     // Machine
	le.PutUint32(pe[0x4c:], 0xF0000000) // PointerToSymbolTable
	le.PutUint32(pe[0x50:], 1)          // NumberOfSymbols
	if _, err := inspectBytes(t, "looping BOOTX64.EFI", b); err != nil {
		t.Fatal(err)
	}
	f, err = openFAT(bytes.NewReader(esp), int64(len(esp)))
	if err != nil {
		t.Fatal(err)
	}
	ff, err := f.open("EFI/BOOT/BOOTX64.EFI")
	if err != nil {
		t.Fatal(err)
	}
	var p [4]byte
	if _, err := ff.ReadAt(p[:], 0xF0000012); err == nil || !strings.Contains(err.Error(), "loops back") || len(ff.chain) > 4 {
		t.Errorf("ReadAt at 3.75 GiB: %v after %d clusters, want the loop found at once", err, len(ff.chain))
	}
}

// FuzzInspectImage runs Inspect on a whole image in any format diskfmt opens. Its seeds
// (testdata/fuzz/FuzzInspectImage, IMGFAB_WRITE_SEEDS=1 go test -run TestInspectSeeds ./inspect)
// are the hostile disks above, small enough to keep.
func FuzzInspectImage(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := diskfmt.OpenReaderAt(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		_, _ = Inspect(context.Background(), img)
	})
}

func hostileSeeds() map[string][]byte {
	return map[string][]byte{
		"gpt-entries-wrap":  gptHeaderDisk(4096, 1<<32-1, 1<<32-8),
		"gpt-entries-wrap2": gptHeaderDisk(4096, 1<<32-1, 1<<31+8),
	}
}

// TestInspectSeeds checks the committed hostile seeds of FuzzInspectImage and rewrites them with
// IMGFAB_WRITE_SEEDS=1.
func TestInspectSeeds(t *testing.T) {
	for name, b := range hostileSeeds() {
		p := filepath.Join("testdata", "fuzz", "FuzzInspectImage", "hostile-"+name)
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if os.Getenv("IMGFAB_WRITE_SEEDS") == "1" {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != body {
			t.Errorf("%s: missing or stale (%v); regenerate with IMGFAB_WRITE_SEEDS=1", p, err)
		}
	}
}

// TestGRUBModsOffsetWraps: a mods section whose module offset is near 2^64 (offset+8 wraps) is
// an empty walk, not a read at a negative offset.
func TestGRUBModsOffsetWraps(t *testing.T) {
	m := grubMods("/EFI/x")
	le.PutUint64(m[8:], 1<<64-4) // grub_module_info64.offset
	if p, err := grubPrefix(bytes.NewReader(makePE(peSec{"mods", m}))); err != nil || p != "" {
		t.Errorf("prefix %q, %v; want none", p, err)
	}
}
