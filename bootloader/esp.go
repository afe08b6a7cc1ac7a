package bootloader

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/imgfab/imgfab/internal/iox"
)

// ESP is a FAT32 filesystem being filled inside a region of a disk file.
type ESP struct {
	fs    *fat32.FileSystem
	epoch time.Time
	size  int64
	used  int64
	dirs  map[string]bool
}

// epochMu serialises the SOURCE_DATE_EPOCH dance around go-diskfs (see doc.go).
var epochMu sync.Mutex

// FAT stores dates as years since 1980 in 7 bits: 1980-01-01 to 2107-12-31 (Microsoft FAT
// specification, "Date and Time Formats"); go-diskfs wraps a time outside that range.
var (
	fatMinTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	fatMaxTime = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
)

// FATTime is t clamped to what FAT can store: a build epoch before 1980 (an image created at
// the Unix epoch, or at Go's zero time) dates the ESP's files 1980-01-01, not a wrapped year.
func FATTime(t time.Time) time.Time {
	switch {
	case t.Before(fatMinTime):
		return fatMinTime
	case t.After(fatMaxTime):
		return fatMaxTime
	}
	return t.UTC()
}

// withEpoch runs fn with SOURCE_DATE_EPOCH set to epoch (clamped by FATTime), restoring the
// previous value afterwards.
func withEpoch(epoch time.Time, fn func() error) error {
	epochMu.Lock()
	defer epochMu.Unlock()
	old, had := os.LookupEnv("SOURCE_DATE_EPOCH")
	os.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(FATTime(epoch).Unix(), 10))
	defer func() {
		if had {
			os.Setenv("SOURCE_DATE_EPOCH", old)
		} else {
			os.Unsetenv("SOURCE_DATE_EPOCH")
		}
	}()
	return fn()
}

// MinESPSize and MaxESPSize bound the ESP: one aligned MiB at least (anything smaller cannot
// hold a FAT and a file), and 32 GiB at most (an ESP holds loaders and kernels; the FAT of a larger
// one would be written whole for nothing).
const (
	MinESPSize = 1 << 20
	MaxESPSize = 32 << 30
)

// FileSpec is one file to put on the ESP.
type FileSpec struct {
	Path string                        // absolute path on the ESP, "/EFI/BOOT/BOOTX64.EFI"
	Size int64                         // bytes
	Open func() (io.ReadCloser, error) // its content
}

// WriteESP formats f[offset:offset+size] as FAT32 labelled label, with the volume serial number
// serial (the filesystem UUID Linux shows as XXXX-XXXX; callers derive it from their inputs), and
// writes files in order. It fails with the numbers when they do not fit.
func WriteESP(ctx context.Context, f iox.DiskFile, offset, size int64, label string, serial uint32, epoch time.Time, files []FileSpec) error {
	var need int64
	for _, fl := range files {
		need += fl.Size
	}
	// FAT32 with go-diskfs: 512-byte clusters up to 260 MB, 4 KiB above; FATs take ~1/128 or less.
	if size < MinESPSize || size > MaxESPSize {
		return fmt.Errorf("writing ESP: %d bytes: an ESP is at least %d MiB and at most %d GiB (--esp-size)", size, MinESPSize>>20, MaxESPSize>>30)
	}
	if avail := max(0, size-size/64-1<<20); need > avail {
		return fmt.Errorf("writing ESP: its files need %d MiB, the %d MiB ESP holds about %d MiB (raise --esp-size)",
			(need+(1<<20)-1)>>20, size>>20, avail>>20)
	}
	return withEpoch(epoch, func() error {
		cf := iox.Coalesce(f)
		storage := file.New(cf, false)
		fsys, err := fat32.Create(storage, fatFSSize(size), offset, 512, label, true)
		if err != nil {
			return fmt.Errorf("writing ESP: formatting FAT32 (%d MiB at offset %d MiB): %w", size>>20, offset>>20, err)
		}
		e := &ESP{fs: fsys, epoch: epoch, size: size, dirs: map[string]bool{"/": true}}
		for _, fl := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := e.add(fl); err != nil {
				return fmt.Errorf("writing ESP: %s: %w", fl.Path, err)
			}
		}
		if err := cf.Flush(); err != nil {
			return fmt.Errorf("writing ESP: %w", err)
		}
		region := struct {
			io.ReaderAt
			io.WriterAt
		}{io.NewSectionReader(f, offset, size), io.NewOffsetWriter(f, offset)}
		if err := fixFAT32(region); err != nil {
			return fmt.Errorf("writing ESP: %w", err)
		}
		if err := setFAT32Serial(region, serial); err != nil {
			return fmt.Errorf("writing ESP: %w", err)
		}
		return nil
	})
}

func (e *ESP) add(fl FileSpec) error {
	dir := path.Dir(fl.Path)
	if !e.dirs[dir] {
		if err := e.fs.Mkdir(dir); err != nil {
			return err
		}
		for d := dir; d != "/"; d = path.Dir(d) {
			e.dirs[d] = true
		}
	}
	r, err := fl.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := e.fs.OpenFile(fl.Path, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(w, r, buf)
	if err != nil {
		w.Close()
		return err
	}
	if n != fl.Size {
		w.Close()
		return fmt.Errorf("copied %d bytes, expected %d", n, fl.Size)
	}
	return w.Close()
}

// treeFile makes a FileSpec for a file of the image tree.
func treeFile(tree fs.FS, src, dst string) (FileSpec, error) {
	st, err := fs.Stat(tree, src)
	if err != nil {
		return FileSpec{}, err
	}
	if !st.Mode().IsRegular() {
		return FileSpec{}, fmt.Errorf("/%s is not a regular file", src)
	}
	return FileSpec{Path: dst, Size: st.Size(), Open: func() (io.ReadCloser, error) { return tree.Open(src) }}, nil
}

// bytesFile makes a FileSpec for generated content.
func bytesFile(dst string, b []byte) FileSpec {
	return FileSpec{Path: dst, Size: int64(len(b)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(&byteReader{b: b}), nil
	}}
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// fatFSSize returns the largest filesystem size ≤ size for which go-diskfs v1.9.4's closed-form
// sectors-per-FAT is big enough. Its formula ceil(4(T−R) / (bps·spc + 8)) leaves out the two
// reserved FAT entries (the exact bound is 4(T−R+2·spc) / (bps·spc + 8)), so for some sizes the FAT
// has two entries fewer than the clusters need and fsck.vfat reports "Filesystem has N clusters but
// only space for N−2 FAT entries" (seen with a 64 MiB ESP). Shrinking the filesystem by a few
// sectors inside its partition avoids those sizes; the partition keeps its size.
func fatFSSize(size int64) int64 {
	const bps, reserved = 512, 32
	spc := int64(1) // go-diskfs: 512-byte clusters up to 260 MB
	if size > 260*1000*1000 {
		spc = 8
	}
	for s := size / bps * bps; s > size-64*bps; s -= bps {
		t := s / bps
		x := (4*(t-reserved) + bps*spc + 8 - 1) / (bps*spc + 8)
		clusters := (t - reserved - 2*x) / spc
		if x*bps/4 >= clusters+2 {
			return s
		}
	}
	return size
}
