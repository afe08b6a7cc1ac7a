package partition

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

type memWriterAt []byte

func (m memWriterAt) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

func TestDiskSignature(t *testing.T) {
	a := DiskSignature([]byte("seed"))
	if a == 0 || a != DiskSignature([]byte("seed")) || a == DiskSignature([]byte("seed2")) {
		t.Fatalf("signature %#x: zero, not deterministic or colliding", a)
	}
	if got := MBRPartUUID(0x0a1b2c3d, 2); got != "0a1b2c3d-02" {
		t.Fatalf("MBRPartUUID = %q", got)
	}
	if got := MBRPartUUID(0xABCDEF01, 10); got != "abcdef01-0a" {
		t.Fatalf("MBRPartUUID = %q (the kernel prints %%08x-%%02x)", got)
	}
}

func TestCHS(t *testing.T) {
	for _, c := range []struct {
		lba  int64
		want []byte
	}{
		{0, []byte{0, 1, 0}},
		{2048, []byte{32, 33, 0}}, // what fdisk writes for a partition at 1 MiB
		{1023*255*63 + 254*63 + 62, []byte{254, 63 | 3<<6, 0xff}},
		{1024 * 255 * 63, []byte{0xFE, 0xFF, 0xFF}},
	} {
		if got := chs(c.lba); !bytes.Equal(got, c.want) {
			t.Errorf("chs(%d) = % x, want % x", c.lba, got, c.want)
		}
	}
}

func TestWriteMBR(t *testing.T) {
	l, err := Plan(0, "", []Spec{{Name: "esp", Type: TypeESP, Size: 64 * MiB}, {Name: "root", Type: TypeRootX86_64, Size: 100 * MiB}})
	if err != nil {
		t.Fatal(err)
	}
	disk := make(memWriterAt, 512)
	for i := range disk[:440] {
		disk[i] = 0x33 // boot code already there
	}
	if err := WriteMBR(disk, l, 0x12345678, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk[:440], bytes.Repeat([]byte{0x33}, 440)) {
		t.Fatal("boot code area written")
	}
	if binary.LittleEndian.Uint32(disk[440:]) != 0x12345678 || disk[510] != 0x55 || disk[511] != 0xAA {
		t.Fatalf("signature or 0x55AA wrong: % x", disk[440:])
	}
	e1, e2 := disk[446:462], disk[462:478]
	if e1[0] != 0x80 || e1[4] != MBRTypeESP || binary.LittleEndian.Uint32(e1[8:]) != 2048 || binary.LittleEndian.Uint32(e1[12:]) != 131072 {
		t.Errorf("entry 1: % x", e1)
	}
	if e2[0] != 0 || e2[4] != MBRTypeLinux || binary.LittleEndian.Uint32(e2[8:]) != 133120 {
		t.Errorf("entry 2: % x", e2)
	}
	if !bytes.Equal(disk[478:510], make([]byte, 32)) {
		t.Error("entries 3 and 4 not empty")
	}
	bad := l
	bad.Partitions = append(append([]Partition(nil), l.Partitions...), Partition{Name: "bios", Type: TypeBIOSBoot, Offset: 200 * MiB, Size: MiB})
	if err := WriteMBR(disk, bad, 1, 0); err == nil || !strings.Contains(err.Error(), "no MBR equivalent") {
		t.Errorf("BIOS boot partition on MBR: %v", err)
	}
	if err := WriteMBR(disk, l, 0, 0); err == nil {
		t.Error("signature 0 accepted")
	}
	big := Layout{Size: 3 << 40}
	if err := WriteMBR(disk, big, 1, -1); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("3 TiB disk: %v", err)
	}
}

// TestWriteMBROracle: sfdisk and fdisk read the table back as written.
func TestWriteMBROracle(t *testing.T) {
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	l, err := Plan(0, "", []Spec{{Name: "esp", Type: TypeESP, Size: 64 * MiB}, {Name: "root", Type: TypeRootX86_64, Size: 100 * MiB}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mbr.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		t.Fatal(err)
	}
	sig := DiskSignature([]byte("oracle"))
	if err := WriteMBR(f, l, sig, 0); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sfdisk, "-d", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk -d: %v\n%s", err, out)
	}
	for _, want := range []string{"label: dos", "label-id: 0x" + MBRPartUUID(sig, 1)[:8],
		path + "1 : start=        2048, size=      131072, type=ef, bootable",
		path + "2 : start=      133120, size=      204800, type=83"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sfdisk -d lacks %q:\n%s", want, out)
		}
	}
	if out, err := exec.Command(sfdisk, "--verify", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
}
