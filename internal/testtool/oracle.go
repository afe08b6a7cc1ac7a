package testtool

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// HashFile writes the contents of the file path into h and returns their length.
func HashFile(t testing.TB, h hash.Hash, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// FileSHA256 is the sha256 of the file path.
func FileSHA256(t testing.TB, path string) [32]byte {
	t.Helper()
	h := sha256.New()
	HashFile(t, h, path)
	return [32]byte(h.Sum(nil))
}

// FileSum is the sha256 of the file path in hex, as imgfab reports an output's.
func FileSum(t testing.TB, path string) string {
	t.Helper()
	s := FileSHA256(t, path)
	return hex.EncodeToString(s[:])
}

// Extract copies [off, off+size) of a file into a new sparse file, for oracles that take a
// whole-file filesystem (e2fsck, fsck.vfat).
func Extract(t testing.TB, path string, off, size int64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("part-%d.img", off))
	cmd := exec.Command("dd", "if="+path, "of="+out, "bs=1M", "iflag=skip_bytes,count_bytes",
		fmt.Sprintf("skip=%d", off), fmt.Sprintf("count=%d", size), "conv=sparse", "status=none")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, o)
	}
	if err := os.Truncate(out, size); err != nil {
		t.Fatal(err)
	}
	return out
}

// Part is a partition of a disk image: its name and where it is.
type Part struct {
	Name         string
	Offset, Size int64
}

// CheckDisk runs every structural oracle on a raw GPT disk as imgfab builds it (parts as the
// build reports them: the ESP, the x86-64 root, and a hybrid or BIOS image's BIOS boot partition):
// sgdisk -v on the table, fsck.vfat -n on the ESP, and e2fsck -fn on the root, which must print
// nothing but its pass lines and summary (EXT4.md §13.1).
func CheckDisk(t *testing.T, raw string, parts []Part) {
	t.Helper()
	e2fsck := Need(t, "e2fsck", "e2fsprogs")
	fsck := Need(t, "fsck.vfat", "dosfstools")
	sgdisk := Need(t, "sgdisk", "gdisk")
	if out, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	// ESP and root (x86-64 or arm64), plus the BIOS boot partition of a hybrid or BIOS image (no
	// filesystem).
	if len(parts) < 2 || len(parts) > 3 || parts[0].Name != "esp" || parts[1].Name != "root-x86-64" && parts[1].Name != "root-arm64" ||
		len(parts) == 3 && parts[2].Name != "bios" {
		t.Fatalf("want esp, root-x86-64 or root-arm64 [, bios], got %+v", parts)
	}
	esp, root := parts[0], parts[1]
	if out, err := exec.Command(fsck, "-n", Extract(t, raw, esp.Offset, esp.Size)).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
	out, err := exec.Command(e2fsck, "-fn", Extract(t, raw, root.Offset, root.Size)).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	// EXT4.md §13.1: nothing but the pass lines and the summary.
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "e2fsck ") || strings.HasPrefix(line, "Pass ") || strings.Contains(line, " files (") && strings.HasSuffix(line, " blocks") {
			continue
		}
		t.Errorf("e2fsck -fn printed %q", line)
	}
}

// CheckReadOnlyDisk runs the oracles on a raw disk with a read-only root (imgfab build --rootfs
// erofs): sgdisk -v; fsck.vfat -n on the ESP; fsck.erofs on the root, which must print nothing
// (fsck.erofs 1.5 exits 0 on some errors it reports); with a root-verity partition, veritysetup
// verify of the root against it and rootHash; e2fsck -fn on /var, the last partition. parts are
// the disk's partitions in table order: esp, root-*, [root-*-verity,] var.
func CheckReadOnlyDisk(t *testing.T, raw string, parts []Part, rootHash string) {
	t.Helper()
	checkReadOnlyDisk(t, raw, parts, rootHash, true)
}

// CheckReadOnlyDiskDeep is CheckReadOnlyDisk without fsck.erofs, for a tree thousands of
// directories deep: fsck.erofs 1.5 recurses once per level and dies of a stack overflow
// (SIGSEGV) at about 2,000. The caller reads the tree with another reader instead.
func CheckReadOnlyDiskDeep(t *testing.T, raw string, parts []Part, rootHash string) {
	t.Helper()
	checkReadOnlyDisk(t, raw, parts, rootHash, false)
}

func checkReadOnlyDisk(t *testing.T, raw string, parts []Part, rootHash string, withFsck bool) {
	t.Helper()
	fsck := Need(t, "fsck.vfat", "dosfstools")
	sgdisk := Need(t, "sgdisk", "gdisk")
	e2fsck := Need(t, "e2fsck", "e2fsprogs")
	if out, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	verityPart := len(parts) == 4 && strings.HasSuffix(parts[2].Name, "-verity")
	if len(parts) != 3 && !verityPart || parts[0].Name != "esp" || !strings.HasPrefix(parts[1].Name, "root-") || parts[len(parts)-1].Name != "var" {
		t.Fatalf("want esp, root-*, [root-*-verity,] var; got %+v", parts)
	}
	if verityPart != (rootHash != "") {
		t.Fatalf("root hash %q with partitions %+v", rootHash, parts)
	}
	if out, err := exec.Command(fsck, "-n", Extract(t, raw, parts[0].Offset, parts[0].Size)).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
	root := Extract(t, raw, parts[1].Offset, parts[1].Size)
	if withFsck {
		fsckErofs := Need(t, "fsck.erofs", "erofs-utils")
		if out, err := exec.Command(fsckErofs, root).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("fsck.erofs: %v\n%s", err, out)
		}
	}
	if verityPart {
		veritysetup := Need(t, "veritysetup", "cryptsetup-bin")
		hash := Extract(t, raw, parts[2].Offset, parts[2].Size)
		if out, err := exec.Command(veritysetup, "verify", root, hash, rootHash).CombinedOutput(); err != nil {
			t.Errorf("veritysetup verify: %v\n%s", err, out)
		}
	}
	v := parts[len(parts)-1]
	if out, err := exec.Command(e2fsck, "-fn", Extract(t, raw, v.Offset, v.Size)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn /var: %v\n%s", err, out)
	}
}
