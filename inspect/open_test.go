package inspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/internal/testtool"
)

// TestOpenForCheck: an ESP (mtools, FAT16) with systemd-boot's files, a BLS entry with two initrd lines,
// x64 and aa64 removable-media loaders, a UKI with an .initrd section and a file fragmented
// around a deleted one. Open finds the default entry and the loaders' architectures; the ESP passes
// fstest.TestFS (Read, ReadAt, Seek, ReadDir agree); OpenInitrd concatenates the entry's initrds
// and reads the UKI's section.
func TestOpenForCheck(t *testing.T) {
	mkfs := testtool.Need(t, "mkfs.vfat", "dosfstools")
	mcopy, mmd, mdel := testtool.Need(t, "mcopy", "mtools"), testtool.Need(t, "mmd", "mtools"), testtool.Need(t, "mdel", "mtools")
	dir := t.TempDir()
	img := filepath.Join(dir, "esp.img")
	run(t, mkfs, "-C", "-F", "16", "-s", "4", "-n", "ESP", img, itoa(40*1024))
	pattern := func(n, seed int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*seed + i/253)
		}
		return b
	}
	ucode, main, frag := pattern(3000, 3), pattern(200000, 5), pattern(50000, 11)
	uki := makePE(peSec{".linux", fakeKernel("6.9.9-uki")}, peSec{".uname", []byte("6.9.9-uki")}, peSec{".initrd", main[:77777]})
	put := func(p string, data []byte) {
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, mcopy, "-i", img, src, "::/"+p)
	}
	for _, d := range []string{"EFI", "EFI/BOOT", "EFI/Linux", "loader", "loader/entries", "i"} {
		run(t, mmd, "-i", img, "::/"+d)
	}
	put("loader/loader.conf", []byte("default e.conf\n"))
	put("loader/entries/e.conf", []byte("title T\nversion 6.1.0-t\nlinux /i/linux\ninitrd /i/ucode\ninitrd /I/MAIN\noptions root=PARTUUID=x console=ttyS0\n"))
	put("EFI/BOOT/BOOTX64.EFI", makePE(peSec{".sdmagic", []byte("#### LoaderInfo: systemd-boot 252 ####")}))
	put("EFI/BOOT/BOOTAA64.EFI", []byte("MZ"))
	put("EFI/Linux/u.efi", uki)
	put("i/linux", fakeKernel("6.1.0-t"))
	put("i/ucode", ucode)
	put("i/gap1", pattern(5000, 7)) // deleted below: frag's chain runs into its clusters, then on
	put("i/keep", pattern(3000, 9))
	run(t, mdel, "-i", img, "::/i/gap1")
	put("i/frag", frag)
	put("i/main", main)
	fsys, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b := espDisk(t, fsys)
	dimg, err := diskfmt.OpenReaderAt(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), dimg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.EFIArchs, []string{"aa64", "x64"}) {
		t.Errorf("EFIArchs %q", d.EFIArchs)
	}
	if d.UEFI == nil || d.UEFI.ID != "e" || d.BIOS != nil || d.Root != nil {
		t.Fatalf("UEFI %+v BIOS %+v root %v", d.UEFI, d.BIOS, d.Root)
	}
	if err := fstest.TestFS(d.ESP, "loader/loader.conf", "loader/entries/e.conf", "i/main", "i/frag", "EFI/Linux/u.efi"); err != nil {
		t.Error(err)
	}
	for p, want := range map[string][]byte{"i/frag": frag, "i/main": main, "I/UCODE": ucode} {
		got, err := fs.ReadFile(d.ESP, p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, err %v; want %d bytes", p, len(got), err, len(want))
		}
	}
	// i/frag must really be in two runs for the test to mean anything.
	ff, err := d.ESP.(*espFS).f.open("i/frag")
	if err != nil {
		t.Fatal(err)
	}
	runs := 1
	for i := int64(1); i*ff.f.clusBytes < ff.size; i++ {
		a, err1 := ff.cluster(i - 1)
		c, err2 := ff.cluster(i)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if c != a+1 {
			runs++
		}
	}
	if runs < 2 {
		t.Errorf("i/frag is in %d run of clusters, want a fragmented file", runs)
	}
	rc, src, err := d.OpenInitrd(d.UEFI)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, append(slices.Clone(ucode), main...)) || src != "esp:/i/ucode+esp:/I/MAIN" {
		t.Errorf("initrd from %q: %d bytes, err %v", src, len(got), err)
	}
	rc, src, err = d.OpenInitrd(&Entry{ID: "u", Type: "uki", Linux: "/EFI/Linux/u.efi"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, main[:77777]) || src != "esp:/EFI/Linux/u.efi(.initrd)" {
		t.Errorf("UKI initrd from %q: %d bytes", src, len(got))
	}
	if _, _, err := d.OpenInitrd(&Entry{ID: "n", Linux: "/i/linux"}); !errors.Is(err, ErrNoInitrd) {
		t.Errorf("entry without initrd: %v, want ErrNoInitrd", err)
	}
	if _, _, err := d.OpenInitrd(&Entry{ID: "m", Initrd: []string{"/missing"}}); err == nil || errors.Is(err, ErrNoInitrd) {
		t.Errorf("missing initrd file: %v", err)
	}
}

// FuzzOpen patches bytes of the fuzz base disk (as FuzzInspect does) and reads everything Open
// hands out: every file and directory of the ESP and the root filesystem, and the default entry's
// initrd. It must return errors, never panic, and stay within the ESP's budget.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 40, 0x06, 0x00})
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
		p := &patched{base: base}
		type pv struct {
			off int64
			v   byte
		}
		var ps []pv
		for i := 0; i+4 <= len(data) && i < 4*256; i += 4 {
			s := secs[int(binary.BigEndian.Uint16(data[i:]))%len(secs)]
			ps = append(ps, pv{s*512 + 2*int64(data[i+2]), data[i+3]})
		}
		slices.SortStableFunc(ps, func(a, b pv) int { return int(a.off - b.off) })
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
		d, err := Open(context.Background(), img)
		if err != nil {
			return
		}
		for _, fsys := range []fs.FS{d.ESP, d.Root} {
			if fsys == nil {
				continue
			}
			n := 0
			_ = fs.WalkDir(fsys, ".", func(p string, e fs.DirEntry, err error) error {
				if n++; err != nil || n > 1000 {
					return fs.SkipDir
				}
				if !e.IsDir() && e.Type().IsRegular() {
					if fl, err := fsys.Open(p); err == nil {
						io.Copy(io.Discard, io.LimitReader(fl, 1<<20))
						fl.Close()
					}
				}
				return nil
			})
		}
		for _, e := range []*Entry{d.UEFI, d.BIOS} {
			if rc, _, err := d.OpenInitrd(e); err == nil {
				io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
				rc.Close()
			}
		}
	})
}
