package inspect

import (
	"context"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/imgfab/imgfab/diskfmt"
)

// Disk is a disk image read further than Inspect reads it: its Report, and the EFI system partition
// and the root filesystem as read-only file systems, for callers that look at files (package check).
// Everything read through it follows the package's security rules: the FAT and ext4 readers check
// every cluster, block and size against the partition, and bound their work by its real bytes.
type Disk struct {
	Report Report
	// ESP is the EFI system partition (nil without one, or when its FAT cannot be read). Names are
	// matched case-insensitively, as FAT names are. Files implement io.ReaderAt and io.Seeker.
	ESP fs.FS
	// Root is the root filesystem (nil when Report.Root is nil or the filesystem cannot be read);
	// it implements fs.ReadDirFS, fs.StatFS and fs.ReadLinkFS: rootfs/ext4.Open's reader for
	// ext2/3/4, go-erofs's for EROFS (fenced as erofs.go says; it reads at most twice the
	// partition's size plus 64 MiB in all). A root under dm-verity is its data partition read
	// directly: nothing read through Root is checked against the hash tree.
	Root fs.FS
	// UEFI is the entry the UEFI loader (EFI/BOOT/BOOTX64.EFI) boots by default, BIOS the one BIOS
	// GRUB boots; nil when there is none. They point into Report.
	UEFI, BIOS *Entry
	// EFIArchs lists the removable-media loaders the ESP holds in EFI/BOOT, by UEFI architecture
	// name (UEFI specification §3.5.1.1): "x64" (BOOTX64.EFI), "aa64" (BOOTAA64.EFI), "ia32",
	// "arm", "riscv64", "loongarch64"; sorted.
	EFIArchs []string
}

// efiArchs are the removable-media file names of UEFI specification §3.5.1.1, by architecture.
var efiArchs = map[string]string{
	"BOOTX64.EFI": "x64", "BOOTAA64.EFI": "aa64", "BOOTIA32.EFI": "ia32", "BOOTARM.EFI": "arm",
	"BOOTRISCV64.EFI": "riscv64", "BOOTLOONGARCH64.EFI": "loongarch64",
}

// Open inspects img (as Inspect does) and opens its ESP and root filesystem for reading. A
// filesystem that cannot be opened is a warning in Report and a nil field, as in Inspect.
func Open(ctx context.Context, img diskfmt.Image) (*Disk, error) {
	rep, err := Inspect(ctx, img)
	if err != nil {
		return nil, err
	}
	d := &Disk{Report: rep}
	d.UEFI, d.BIOS = defaultEntries(&d.Report)
	if b := rep.Boot; b != nil {
		for _, p := range rep.Partitions {
			if p.Number != b.ESP {
				continue
			}
			f, err := openFAT(io.NewSectionReader(img, p.Offset, p.Size), p.Size)
			if err != nil {
				break // already a warning of Inspect's
			}
			// Files handed out are read whole (an initrd, a UKI): the budget is the partition's
			// real bytes twice over, plus what directory walks take.
			f.left = maxFATRead + 2*p.Size
			d.ESP = &espFS{f: f}
			if es, err := f.lookup("EFI/BOOT"); err == nil && es.dir {
				ents, _ := f.list(es.clus)
				for _, e := range ents {
					if a, ok := efiArchs[strings.ToUpper(e.name)]; ok && !e.dir && !e.label {
						d.EFIArchs = append(d.EFIArchs, a)
					}
				}
				slices.Sort(d.EFIArchs)
				d.EFIArchs = slices.Compact(d.EFIArchs)
			}
		}
	}
	if r := rep.Root; r != nil {
		for _, p := range rep.Partitions {
			if p.Number != r.Partition || p.Filesystem == nil {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if tree, err := openRoot(img, &p, erofsInspectBudget+2*p.Size); err == nil {
				d.Root = tree
			}
		}
	}
	return d, nil
}

// defaultEntries finds in rep the entries resolveBoot chose: the UEFI loader's (systemd-boot: the
// default BLS entry; a UKI: its own; shim or GRUB: the first menuentry of the grub.cfg it reads)
// and BIOS GRUB's (the first menuentry of the grub.cfg used by "bios").
func defaultEntries(rep *Report) (uefi, bios *Entry) {
	b := rep.Boot
	if b == nil {
		return nil, nil
	}
	grub := func(mode string) *Entry {
		for i := range b.GRUB {
			if slices.Contains(b.GRUB[i].UsedBy, mode) && b.GRUB[i].Entry != nil {
				return b.GRUB[i].Entry
			}
		}
		return nil
	}
	switch rep.UEFILoader {
	case "systemd-boot":
		for i := range b.Entries {
			if b.Entries[i].Default {
				uefi = &b.Entries[i]
			}
		}
	case "uki":
		if b.EFILoader != nil {
			uefi = b.EFILoader.UKI
		}
	case "shim", "grub":
		uefi = grub("uefi")
	}
	if rep.BIOSLoader == "grub" {
		bios = grub("bios")
	}
	return uefi, bios
}

// maxInitrdParts bounds the initrd lines of one entry that are opened.
const maxInitrdParts = 16

// ErrNoInitrd is OpenInitrd's error for an entry that boots without an initrd.
var ErrNoInitrd = errors.New("the boot entry has no initrd")

// OpenInitrd opens the initrd entry e boots with, as the loader would hand it to the kernel: a BLS
// or GRUB entry's initrd files concatenated in order (on the ESP; for GRUB, else on the root
// filesystem), a unified kernel image's .initrd section, or, when the entry names none,
// Report.Initrd on the root filesystem when e's version is the report's. It returns the initrd and
// where it was found (for messages); ErrNoInitrd when e boots without one.
func (d *Disk) OpenInitrd(e *Entry) (io.ReadCloser, string, error) {
	if e == nil {
		return nil, "", errors.New("no boot entry")
	}
	if e.Type == "uki" {
		return d.ukiInitrd(e.Linux)
	}
	if len(e.Initrd) > maxInitrdParts {
		return nil, "", fmt.Errorf("entry %s: %d initrd files, more than %d", e.ID, len(e.Initrd), maxInitrdParts)
	}
	var rs []io.Reader
	var where []string
	for _, p := range e.Initrd {
		f, name, err := d.openBootFile(p, e.Type == "grub")
		if err != nil {
			return nil, "", fmt.Errorf("entry %s: initrd %s: %w", e.ID, p, err)
		}
		rs, where = append(rs, f), append(where, name)
	}
	if len(rs) == 0 && d.Report.Initrd != "" && d.Root != nil && e.Version != "" && e.Version == d.Report.KernelVersion {
		f, err := d.Root.Open(strings.TrimPrefix(d.Report.Initrd, "/"))
		if err != nil {
			return nil, "", err
		}
		return f, "root:" + d.Report.Initrd, nil
	}
	if len(rs) == 0 {
		return nil, "", fmt.Errorf("entry %s: %w", e.ID, ErrNoInitrd)
	}
	return multiCloser{io.MultiReader(rs...), rs}, strings.Join(where, "+"), nil
}

// openBootFile opens a path a loader names: on the ESP, and for GRUB (whose root may be another
// partition) else on the root filesystem. GRUB's "(device)" prefix is dropped; a path through a
// variable ($root/...) cannot be followed.
func (d *Disk) openBootFile(p string, grub bool) (io.Reader, string, error) {
	if strings.HasPrefix(p, "(") {
		if i := strings.IndexByte(p, ')'); i > 0 {
			p = p[i+1:]
		}
	}
	if strings.Contains(p, "$") {
		return nil, "", fmt.Errorf("a path through a GRUB variable is not followed")
	}
	name := strings.Trim(path.Clean("/"+p), "/")
	if d.ESP != nil {
		f, err := d.ESP.Open(name)
		if err == nil {
			return f, "esp:/" + name, nil
		}
		if !grub || !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	if grub && d.Root != nil {
		f, err := d.Root.Open(name)
		if err != nil {
			return nil, "", err
		}
		return f, "root:/" + name, nil
	}
	return nil, "", fs.ErrNotExist
}

// ukiInitrd opens the .initrd section of the unified kernel image at p on the ESP (UAPI UKI
// specification, "UKI Components").
func (d *Disk) ukiInitrd(p string) (io.ReadCloser, string, error) {
	if d.ESP == nil {
		return nil, "", fmt.Errorf("no ESP to read the UKI %s from", p)
	}
	name := strings.Trim(path.Clean("/"+p), "/")
	f, err := d.ESP.Open(name)
	if err != nil {
		return nil, "", err
	}
	ra, ok := f.(io.ReaderAt)
	if !ok {
		f.Close()
		return nil, "", fmt.Errorf("%s: not a file", p)
	}
	pf, err := pe.NewFile(ra)
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("%s: not a PE image: %w", p, err)
	}
	s := pf.Section(".initrd")
	if s == nil {
		f.Close()
		return nil, "", fmt.Errorf("UKI %s (no .initrd section): %w", p, ErrNoInitrd)
	}
	n := int64(s.Size)
	if s.VirtualSize != 0 && int64(s.VirtualSize) < n {
		n = int64(s.VirtualSize) // SizeOfRawData is rounded up to FileAlignment (PE/COFF §4)
	}
	return multiCloser{io.NewSectionReader(s, 0, n), []io.Reader{f}}, "esp:/" + name + "(.initrd)", nil
}

// multiCloser reads r and closes every closer among cs.
type multiCloser struct {
	io.Reader
	cs []io.Reader
}

func (m multiCloser) Close() error {
	var errs []error
	for _, c := range m.cs {
		if cl, ok := c.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// espFS is the fs.FS view of a FAT filesystem: names are matched case-insensitively; files read
// through their cluster chains (fatFile), contiguous clusters in one read.
type espFS struct{ f *fatFS }

var (
	_ fs.FS        = (*espFS)(nil)
	_ fs.StatFS    = (*espFS)(nil)
	_ fs.ReadDirFS = (*espFS)(nil)
)

func (e *espFS) entry(op, name string) (fatEntry, error) {
	if !fs.ValidPath(name) {
		return fatEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return fatEntry{name: ".", dir: true}, nil
	}
	ent, err := e.f.lookup(name)
	if err != nil {
		return fatEntry{}, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return ent, nil
}

func (e *espFS) Open(name string) (fs.File, error) {
	ent, err := e.entry("open", name)
	if err != nil {
		return nil, err
	}
	fi := fatInfo{ent}
	if ent.dir {
		return &espDir{fs: e, fi: fi, name: name}, nil
	}
	ff := &fatFile{f: e.f, path: name, size: ent.size, chain: []int64{ent.clus}, mark: ent.clus}
	return &espFile{fi: fi, sr: io.NewSectionReader(runReader{ff}, 0, ent.size)}, nil
}

func (e *espFS) Stat(name string) (fs.FileInfo, error) {
	ent, err := e.entry("stat", name)
	if err != nil {
		return nil, err
	}
	return fatInfo{ent}, nil
}

func (e *espFS) ReadDir(name string) ([]fs.DirEntry, error) {
	ent, err := e.entry("readdir", name)
	if err != nil {
		return nil, err
	}
	if !ent.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	es, err := e.f.list(ent.clus)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	var out []fs.DirEntry
	for _, x := range es {
		if !x.label {
			out = append(out, fs.FileInfoToDirEntry(fatInfo{x}))
		}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// runReader reads a fatFile, in one read per run of consecutive clusters.
type runReader struct{ ff *fatFile }

func (r runReader) ReadAt(p []byte, off int64) (int, error) {
	ff := r.ff
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", ff.path, off)
	}
	cb := ff.f.clusBytes
	n := 0
	for n < len(p) && off < ff.size {
		c, err := ff.cluster(off / cb)
		if err != nil {
			return n, err
		}
		// Extend the run while the next cluster follows on the disk.
		want := min(int64(len(p)-n), ff.size-off)
		k := min(want, cb-off%cb)
		for k < want {
			next, err := ff.cluster((off + k) / cb)
			if err != nil || next != c+(off+k)/cb-off/cb {
				break
			}
			k = min(want, k+cb)
		}
		if err := ff.f.readAt(p[n:n+int(k)], ff.f.dataOff+(c-2)*cb+off%cb, ff.path); err != nil {
			return n, err
		}
		n += int(k)
		off += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type espFile struct {
	fi fatInfo
	sr *io.SectionReader
}

func (f *espFile) Stat() (fs.FileInfo, error)                { return f.fi, nil }
func (f *espFile) Read(p []byte) (int, error)                { return f.sr.Read(p) }
func (f *espFile) ReadAt(p []byte, off int64) (int, error)   { return f.sr.ReadAt(p, off) }
func (f *espFile) Seek(off int64, whence int) (int64, error) { return f.sr.Seek(off, whence) }
func (f *espFile) Close() error                              { return nil }

type espDir struct {
	fs      *espFS
	fi      fatInfo
	name    string
	entries []fs.DirEntry
	read    bool
}

func (d *espDir) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d *espDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errors.New("is a directory")}
}
func (d *espDir) Close() error { return nil }
func (d *espDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		es, err := d.fs.ReadDir(d.name)
		if err != nil {
			return nil, err
		}
		d.entries, d.read = es, true
	}
	if n <= 0 {
		es := d.entries
		d.entries = nil
		return es, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	k := min(n, len(d.entries))
	es := d.entries[:k]
	d.entries = d.entries[k:]
	return es, nil
}

// fatInfo is a FAT directory entry as fs.FileInfo; FAT keeps no owner or permissions, so files
// are 0444 and directories 0555; times are not read.
type fatInfo struct{ e fatEntry }

func (i fatInfo) Name() string {
	if i.e.name == "" {
		return "."
	}
	return i.e.name
}
func (i fatInfo) Size() int64 { return i.e.size }
func (i fatInfo) Mode() fs.FileMode {
	if i.e.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i fatInfo) ModTime() time.Time { return time.Time{} }
func (i fatInfo) IsDir() bool        { return i.e.dir }
func (i fatInfo) Sys() any           { return nil }
