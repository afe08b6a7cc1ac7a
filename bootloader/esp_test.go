package bootloader

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

// The volume serial lands in the boot sector and its backup, fsck.vfat accepts the result and
// blkid-style readers see it as the filesystem UUID.
func TestESPSerial(t *testing.T) {
	fsck := testtool.Need(t, "fsck.vfat", "dosfstools")
	path := filepath.Join(t.TempDir(), "esp.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	files := []FileSpec{bytesFile("/EFI/BOOT/BOOTX64.EFI", []byte("not really a loader"))}
	if err := WriteESP(context.Background(), f, 0, size, "ESP", 0x42e7b3d7, time.Unix(1700000000, 0), files); err != nil {
		t.Fatal(err)
	}
	bs := make([]byte, 512*7)
	if _, err := f.ReadAt(bs, 0); err != nil {
		t.Fatal(err)
	}
	backup := int(binary.LittleEndian.Uint16(bs[50:52]))
	if backup == 0 || backup > 6 {
		t.Fatalf("backup boot sector at %d", backup)
	}
	for _, off := range []int{67, backup*512 + 67} {
		if got := binary.LittleEndian.Uint32(bs[off:]); got != 0x42e7b3d7 {
			t.Errorf("volume serial at byte %d: %#x", off, got)
		}
	}
	out, err := exec.Command(fsck, "-n", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "differ") {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
}
