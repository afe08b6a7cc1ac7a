package inspect

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/diskfmt"
)

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func inspectFile(t *testing.T, path string) Report {
	t.Helper()
	img, err := diskfmt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	rep, err := Inspect(context.Background(), img)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return rep
}

// mkESP makes a FAT filesystem image of the given FAT size with mkfs.vfat and fills it with mcopy.
func mkESP(t *testing.T, bits, mib int, label string) string {
	t.Helper()
	mkfs := testtool.Need(t, "mkfs.vfat", "dosfstools")
	mcopy := testtool.Need(t, "mcopy", "mtools")
	mmd := testtool.Need(t, "mmd", "mtools")
	dir := t.TempDir()
	img := filepath.Join(dir, "esp.img")
	run(t, mkfs, "-C", "-F", itoa(bits), "-n", label, "-i", "12345678", img, itoa(mib*1024))
	files := map[string]string{
		"loader/loader.conf":      "# comment\ndefault  b-*.conf\ntimeout 3\n",
		"loader/entries/a-1.conf": "title A\nversion 1\nlinux /a/linux\noptions root=PARTUUID=x ro\n",
		"loader/entries/b-2.conf": "title   B Linux\nversion 2\nlinux /b/linux\ninitrd /b/ucode\ninitrd /b/initrd\n" +
			"options root=LABEL=r\noptions quiet\n",
		"loader/entries/b-1-with-a-long-name.conf": "title B old\nversion 1\nlinux /b/old\n",
		"EFI/BOOT/BOOTX64.EFI":                     "MZ not really",
	}
	for _, d := range []string{"loader", "loader/entries", "EFI", "EFI/BOOT"} {
		run(t, mmd, "-i", img, "::/"+d)
	}
	for p, c := range files {
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, []byte(c), 0644); err != nil {
			t.Fatal(err)
		}
		run(t, mcopy, "-i", img, src, "::/"+p)
	}
	return img
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestFAT reads ESPs made by mkfs.vfat as FAT12, FAT16 and FAT32 (with long names, several entries,
// repeated initrd and options lines).
func TestFAT(t *testing.T) {
	for _, c := range []struct{ bits, mib int }{{12, 4}, {16, 40}, {32, 64}} {
		t.Run("FAT"+itoa(c.bits), func(t *testing.T) {
			img := mkESP(t, c.bits, c.mib, "MYESP")
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			fat, err := openFAT(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if fat.bits != c.bits {
				t.Errorf("FAT%d detected as FAT%d", c.bits, fat.bits)
			}
			if l := fat.volumeLabel(); l != "MYESP" {
				t.Errorf("label %q", l)
			}
			if fs := probe(f, st.Size()); fs.Type != "vfat" || fs.UUID != "1234-5678" || fs.Label != "MYESP" {
				t.Errorf("probe = %+v", fs)
			}
			boot, loader, err := readESP(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if loader != "systemd-boot" || !boot.Fallback || boot.Default != "b-*.conf" || len(boot.Entries) != 3 {
				t.Fatalf("boot = %+v loader %q", boot, loader)
			}
			def := boot.Entries[2] // a-1, b-1-with-a-long-name, b-2: the last match of b-* wins
			if !def.Default || def.ID != "b-2" || def.Title != "B Linux" || def.Linux != "/b/linux" ||
				strings.Join(def.Initrd, ",") != "/b/ucode,/b/initrd" || def.Options != "root=LABEL=r quiet" {
				t.Errorf("default entry = %+v", def)
			}
			if boot.Entries[1].ID != "b-1-with-a-long-name" || boot.Entries[0].Default || boot.Entries[1].Default {
				t.Errorf("entries = %+v", boot.Entries)
			}
		})
	}
}

// TestMBRAndWholeDisk: an MBR disk made by sfdisk with an ext4 and a swap partition, and a disk that is
// one ext4 filesystem with no table.
func TestMBRAndWholeDisk(t *testing.T) {
	mke2fs := testtool.Need(t, "mke2fs", "e2fsprogs")
	sfdisk := testtool.Need(t, "sfdisk", "fdisk")
	mkswap := testtool.Need(t, "mkswap", "util-linux")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc/os-release"), []byte("NAME=\"Test OS\"\nID=test\nVERSION_ID='7'\nPRETTY_NAME=\"Test \\\"OS\\\" 7\"\n"), 0644); err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(dir, "whole.raw")
	run(t, mke2fs, "-q", "-t", "ext4", "-L", "wholefs", "-U", "11111111-2222-3333-4444-555555555555", "-d", src, whole, "16M")
	rep := inspectFile(t, whole)
	if rep.PartitionTable != "none" || len(rep.Partitions) != 1 || rep.Partitions[0].Filesystem.Type != "ext4" ||
		rep.Partitions[0].Filesystem.UUID != "11111111-2222-3333-4444-555555555555" || rep.Partitions[0].Filesystem.Label != "wholefs" {
		t.Errorf("whole disk: %+v", rep)
	}
	if rep.Root == nil || rep.Root.By != "filesystem" || rep.OS == nil || *rep.OS != (OSRelease{Name: "Test OS", ID: "test", VersionID: "7", PrettyName: `Test "OS" 7`}) {
		t.Errorf("whole disk root %+v os %+v", rep.Root, rep.OS)
	}

	disk := filepath.Join(dir, "mbr.raw")
	if err := os.WriteFile(disk, nil, 0644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sfdisk, "-q", disk)
	cmd.Stdin = strings.NewReader("label: dos\nstart=2048, size=8192, type=82\nstart=10240, type=83\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	swap := filepath.Join(dir, "swap.img") // Debian 12's mkswap has no --offset: make it apart, copy it in
	if err := os.WriteFile(swap, make([]byte, 8192*512), 0644); err != nil {
		t.Fatal(err)
	}
	run(t, mkswap, "-q", "-L", "sw", "-U", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", swap)
	sb, err := os.ReadFile(swap)
	if err != nil {
		t.Fatal(err)
	}
	df, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.WriteAt(sb, 2048*512); err != nil {
		t.Fatal(err)
	}
	df.Close()
	run(t, mke2fs, "-q", "-t", "ext4", "-E", "offset="+itoa(10240*512), "-d", src, disk, itoa((64<<20-10240*512)>>10)+"k")
	rep = inspectFile(t, disk)
	if rep.PartitionTable != "mbr" || len(rep.Partitions) != 2 {
		t.Fatalf("mbr: %+v", rep)
	}
	sw, root := rep.Partitions[0], rep.Partitions[1]
	if sw.Type != "swap" || sw.TypeGUID != "0x82" || sw.Offset != 2048*512 || sw.Size != 8192*512 ||
		sw.Filesystem.Type != "swap" || sw.Filesystem.Label != "sw" || sw.Filesystem.UUID != "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" {
		t.Errorf("swap partition %+v %+v", sw, sw.Filesystem)
	}
	if root.Type != "linux-generic" || root.Filesystem.Type != "ext4" || rep.Root == nil || rep.Root.Partition != 2 || rep.OS == nil || rep.OS.ID != "test" {
		t.Errorf("root partition %+v %+v, root %+v os %+v", root, root.Filesystem, rep.Root, rep.OS)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]string{`"a b"`: "a b", `'x\y'`: `x\y`, `"q\"q"`: `q"q`, `plain`: "plain", `"`: `"`} {
		if got := unquote(in); got != want {
			t.Errorf("unquote(%s) = %q, want %q", in, got, want)
		}
	}
	b := &Boot{Default: "@saved", Entries: []Entry{{ID: "x"}, {ID: "y"}}}
	markDefault(b)
	if !b.Entries[0].Default || b.Entries[1].Default {
		t.Errorf("@saved: %+v", b.Entries)
	}
	e := parseEntry("e.conf", []byte("title\tTabbed  title\nlinux /k\n#options no\noptions  a=1 \n"))
	if e.ID != "e" || e.Title != "Tabbed  title" || e.Linux != "/k" || e.Options != "a=1" {
		t.Errorf("parseEntry = %+v", e)
	}
}
