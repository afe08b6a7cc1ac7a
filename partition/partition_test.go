package partition

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

func TestPlan(t *testing.T) {
	l, err := Plan(0, "G", []Spec{{Name: "esp", Size: 100 * MiB}, {Name: "root", Size: 300*MiB + 1}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Partitions[0].Offset != MiB || l.Partitions[1].Offset != 101*MiB || l.Partitions[1].Size != 301*MiB {
		t.Fatalf("bad layout %+v", l)
	}
	if l.Size != 403*MiB {
		t.Fatalf("disk size %d, want %d", l.Size, 403*MiB)
	}
	l, err = Plan(1024*MiB, "G", []Spec{{Name: "esp", Size: 100 * MiB}, {Name: "root"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Partitions[1].Size; got != (1024-102)*MiB {
		t.Fatalf("root size %d MiB", got/MiB)
	}
	if _, err := Plan(100*MiB, "G", []Spec{{Name: "esp", Size: 100 * MiB}, {Name: "root"}}); err == nil || !strings.Contains(err.Error(), "disk is 100 MiB") {
		t.Fatalf("want a too-small error naming the sizes, got %v", err)
	}
}

func TestDeriveGUID(t *testing.T) {
	a := DeriveGUID([]byte("seed"), "root")
	if a != DeriveGUID([]byte("seed"), "root") {
		t.Fatal("not deterministic")
	}
	if a == DeriveGUID([]byte("seed"), "esp") || a == DeriveGUID([]byte("seed2"), "root") {
		t.Fatal("labels or seeds collide")
	}
	if len(a) != 36 || a[14] != '4' || !strings.ContainsRune("89AB", rune(a[19])) {
		t.Fatalf("not a v4 GUID: %s", a)
	}
}

func TestWriteGPTOracle(t *testing.T) {
	sgdisk := testtool.Need(t, "sgdisk", "gdisk")
	seed := []byte("test")
	l, err := Plan(0, DeriveGUID(seed, "disk"), []Spec{
		{Name: "esp", Type: TypeESP, GUID: DeriveGUID(seed, "esp"), Size: 64 * MiB},
		{Name: "root-x86-64", Type: TypeRootX86_64, GUID: DeriveGUID(seed, "root"), Size: 200 * MiB},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		t.Fatal(err)
	}
	if err := WriteGPT(f, l); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sgdisk, "-v", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	out, err = exec.Command(sgdisk, "-i", "2", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 2: %v\n%s", err, out)
	}
	for _, want := range []string{TypeRootX86_64, l.Partitions[1].GUID, "First sector: 133120", "root-x86-64"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sgdisk -i 2 lacks %q:\n%s", want, out)
		}
	}
	out, _ = exec.Command(sgdisk, "-p", path).CombinedOutput()
	if !strings.Contains(string(out), l.GUID) {
		t.Errorf("disk GUID %s not in:\n%s", l.GUID, out)
	}
	// The same layout written again gives the same bytes.
	a, _ := os.ReadFile(path)
	path2 := filepath.Join(t.TempDir(), "disk2.raw")
	f2, _ := os.Create(path2)
	defer f2.Close()
	f2.Truncate(l.Size)
	if err := WriteGPT(f2, l); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path2)
	if string(a) != string(b) {
		t.Fatal("two writes of one layout differ")
	}
}
