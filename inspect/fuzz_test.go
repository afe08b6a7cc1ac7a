package inspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/diskfmt"
)

// patched is a base disk with a few bytes overwritten, read without copying the base.
type patched struct {
	base []byte
	offs []int64 // sorted, unique
	vals []byte
}

func (p *patched) ReadAt(b []byte, off int64) (int, error) {
	n, err := bytes.NewReader(p.base).ReadAt(b, off)
	i := sort.Search(len(p.offs), func(i int) bool { return p.offs[i] >= off })
	for ; i < len(p.offs) && p.offs[i] < off+int64(n); i++ {
		b[p.offs[i]-off] = p.vals[i]
	}
	return n, err
}

var fuzzDisk struct {
	once    sync.Once
	img     []byte
	sectors []int64 // non-zero 512-byte sectors: tables, boot sector, FATs, directories, inodes
	err     error
}

// smallDisk makes an 8 MiB GPT disk: a FAT12 ESP with systemd-boot files (mtools) and an ext4 root
// with os-release and a kernel (mke2fs -d). Files go in a fixed order and the volume ids are fixed,
// so every process fuzzes the same disk (coverage of a corpus input is the same from run to run).
func smallDisk(t testing.TB) []byte {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, make([]byte, 8<<20), 0644); err != nil {
		t.Fatal(err)
	}
	run(t, testtool.Need(t, "sgdisk", "gdisk"), "-n", "1:2048:+1M", "-t", "1:EF00", "-c", "1:esp", "-n", "2:4096:0", "-t", "2:4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "-c", "2:root", disk)
	esp := filepath.Join(dir, "esp.img")
	run(t, testtool.Need(t, "mkfs.vfat", "dosfstools"), "-i", "1A2B3C4D", "-C", esp, "1024")
	mmd, mcopy := testtool.Need(t, "mmd", "mtools"), testtool.Need(t, "mcopy", "mtools")
	run(t, mmd, "-i", esp, "::/loader", "::/loader/entries", "::/EFI", "::/EFI/BOOT")
	for _, f := range [][2]string{
		{"loader/loader.conf", "default e.conf\n"},
		{"loader/entries/e.conf", "title T\nversion 1\nlinux /l\ninitrd /i\noptions root=PARTUUID=x rw\n"},
		{"EFI/BOOT/BOOTX64.EFI", "MZ"},
	} {
		p, c := f[0], f[1]
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, []byte(c), 0644); err != nil {
			t.Fatal(err)
		}
		run(t, mcopy, "-i", esp, src, "::/"+p)
	}
	tree := filepath.Join(dir, "tree")
	for _, f := range [][2]string{{"boot/initrd.img-1", "i"}, {"boot/vmlinuz-1", "k"}, {"etc/os-release", "PRETTY_NAME=\"Fuzz\"\n"}} {
		p, c := f[0], f[1]
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0755)
		if err := os.WriteFile(filepath.Join(tree, p), []byte(c), 0644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, testtool.Need(t, "mke2fs", "e2fsprogs"), "-q", "-t", "ext4", "-b", "1024", "-U", "6a1c0b5e-3f1d-4c2a-9b7e-0d4f5a6b7c8d",
		"-E", "offset=2097152,hash_seed=0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "-d", tree, disk, "5000k")
	e, err := os.ReadFile(esp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[1<<20:], e)
	return b
}

// FuzzInspect overwrites bytes of a small GPT disk and requires that Inspect returns a report or an
// error, never panics or hangs. Each 4-byte record of the input picks a non-zero sector of the base disk
// (bytes 0-1), an offset in it (byte 2, ×2) and a value (byte 3).
func FuzzInspect(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0x2C, 0x00})                   // GPT header CRC
	f.Add([]byte{0, 2, 0x10, 0xFF, 0, 2, 0x14, 0x7F}) // first entry's LBAs
	f.Add([]byte{0, 40, 0x06, 0x00})                  // somewhere in the ESP
	f.Add([]byte{0, 200, 0x1C, 0x05, 1, 10, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDisk.once.Do(func() {
			img := smallDisk(t)
			for s := int64(0); s*512 < int64(len(img)); s++ {
				if !bytes.Equal(img[s*512:(s+1)*512], make([]byte, 512)) {
					fuzzDisk.sectors = append(fuzzDisk.sectors, s)
				}
			}
			fuzzDisk.img = img
		})
		base, secs := fuzzDisk.img, fuzzDisk.sectors
		type pv struct {
			off int64
			v   byte
		}
		var ps []pv
		for i := 0; i+4 <= len(data) && i < 4*256; i += 4 {
			s := secs[int(binary.BigEndian.Uint16(data[i:]))%len(secs)]
			ps = append(ps, pv{s*512 + 2*int64(data[i+2]), data[i+3]})
		}
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].off < ps[j].off })
		p := &patched{base: base}
		for _, x := range ps {
			if n := len(p.offs); n > 0 && p.offs[n-1] == x.off {
				p.vals[n-1] = x.v
				continue
			}
			p.offs, p.vals = append(p.offs, x.off), append(p.vals, x.v)
		}
		img, err := diskfmt.OpenReaderAt(p, int64(len(base)))
		if err != nil {
			return
		}
		_, _ = Inspect(context.Background(), img)
	})
}

// TestSmallDisk checks the fuzz base disk inspects cleanly, so the fuzzer starts from a good image.
func TestSmallDisk(t *testing.T) {
	b := smallDisk(t)
	img, err := diskfmt.OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Inspect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PartitionTable != "gpt" || len(rep.Partitions) != 2 || rep.Boot == nil || len(rep.Boot.Entries) != 1 ||
		rep.Cmdline != "root=PARTUUID=x rw" || rep.Kernel != "/boot/vmlinuz-1" || rep.Initrd != "/boot/initrd.img-1" ||
		rep.Root == nil || rep.Root.By != "type" || rep.OS == nil || rep.OS.PrettyName != "Fuzz" || len(rep.Warnings) != 0 {
		t.Errorf("report = %+v", rep)
	}
}
