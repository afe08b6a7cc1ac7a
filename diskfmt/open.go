package diskfmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/imgfab/imgfab/internal/safefile"
)

// Image is a disk image opened for reading, in any supported format.
type Image interface {
	// Disk reads the GUEST (virtual) disk: Size is the virtual size, Extents the ranges that may
	// hold data (allocated clusters, grains or blocks, merged; conservative), ReadAt is safe for
	// concurrent use.
	Disk
	// Format is "raw", "qcow2", "vmdk", "vhd" (fixed), "vhd-dynamic" or "gce".
	Format() string
	// Close releases the file opened by Open; after OpenReaderAt it does nothing.
	Close() error
}

// FormatError is a structural problem in a disk image: the format, the field, its file offset and
// what is wrong with it.
type FormatError struct {
	Format string // "qcow2", "vmdk", "vhd"
	Field  string // e.g. "L2 entry", "footer checksum"
	Offset int64  // file offset of the field; -1 when there is none
	Reason string
}

func (e *FormatError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("%s: %s: %s", e.Format, e.Field, e.Reason)
	}
	return fmt.Sprintf("%s: %s at offset %#x: %s", e.Format, e.Field, e.Offset, e.Reason)
}

func formatErr(format, field string, off int64, reason string, a ...any) *FormatError {
	return &FormatError{Format: format, Field: field, Offset: off, Reason: fmt.Sprintf(reason, a...)}
}

// Limits on what a header may make a reader allocate or walk; real images are far below them.
const (
	maxTableBytes = 64 << 20 // one table (L1, grain directory, BAT) read whole
	maxExtentRuns = 64       // runs kept per L2 table / grain table before it becomes one extent
)

// Open opens the disk image at path, detecting its format from its content: qcow2 by "QFI\xfb" at
// 0, VMDK by "KDMV" at 0 (a text descriptor is refused: its data lives in other files), VHD by its
// "conectix" footer copy at 0 (dynamic) or footer at the end (fixed), anything else is raw. A file
// whose name ends in .qcow2, .vmdk or .vhd but whose content is raw is refused (FormatError on the
// magic), since reading it as raw would silently give the container bytes as the guest.
// The raw and fixed VHD extents come from SEEK_DATA/SEEK_HOLE. A GCE image tarball (gzip, first
// entry disk.raw) is decompressed into a temporary file first (see openGCE).
func Open(ctx context.Context, path string) (Image, error) {
	f, fi, err := safefile.Open(path, "image")
	if err != nil {
		return nil, fmt.Errorf("diskfmt: %w", err)
	}
	if ok, _ := IsGCETarballAt(f); ok {
		img, err := readGCE(ctx, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("diskfmt: opening image %s: %w", path, err)
		}
		return img, nil
	}
	img, err := open(f, fi.Size(), f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("diskfmt: opening image %s: %w", path, err)
	}
	if img.Format() == "raw" {
		if want := extFormat(path); want != "" {
			f.Close()
			return nil, fmt.Errorf("diskfmt: opening image %s: %w", path,
				formatErr(want, "magic", 0, "the file name says %s but the file does not start with %s magic (it would read as raw)", want, want))
		}
	}
	return img, nil
}

// extFormat returns the format a file name claims, for the formats with a magic number.
func extFormat(path string) string {
	lower := strings.ToLower(path)
	switch {
	case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		return "gce" // a GCE tarball is read (openGCE); any other gzip'd tar is not a disk
	case strings.HasSuffix(lower, ".gz"), strings.HasSuffix(lower, ".zst"), strings.HasSuffix(lower, ".xz"):
		return "compressed raw (decompress it first)"
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".qcow2":
		return "qcow2"
	case ".vmdk":
		return "vmdk"
	case ".vhd", ".vpc":
		return "vhd"
	}
	return ""
}

// OpenReaderAt opens the disk image of the given size read through r, detecting its format as
// Open does (without the file-name check). The caller keeps r open while the Image is used.
func OpenReaderAt(r io.ReaderAt, size int64) (Image, error) {
	if size < 0 {
		return nil, fmt.Errorf("diskfmt: opening image: negative size %d", size)
	}
	img, err := open(r, size, nil)
	if err != nil {
		return nil, fmt.Errorf("diskfmt: opening image: %w", err)
	}
	return img, nil
}

// open detects the format. f, when set, is the file behind r (for SEEK_DATA and Close).
func open(r io.ReaderAt, size int64, f *os.File) (Image, error) {
	var head [512]byte
	n, err := r.ReadAt(head[:min(size, 512)], 0)
	if n < int(min(size, 512)) {
		return nil, fmt.Errorf("reading the first %d bytes: %w", min(size, 512), err)
	}
	var img Image
	switch {
	case size >= 4 && string(head[:4]) == "QFI\xfb": // qcow2.rst "Header": magic
		img, err = openQcow2(r, size)
	case size >= 4 && string(head[:4]) == "KDMV": // VMDK 5.0 "Hosted Sparse Extent Header": magicNumber
		img, err = openVMDK(r, size)
	case size >= 4 && string(head[:4]) == "COWD":
		err = formatErr("vmdk", "magic", 0, "ESX server sparse extent (COWD, version 1) is not supported")
	case bytes.HasPrefix(head[:n], []byte("# Disk DescriptorFile")):
		err = formatErr("vmdk", "descriptor", 0, "a text descriptor file (%s): its data lives in separate extent files, which imgfab does not follow; convert the extent file itself (a flat extent is raw)", vmdkCreateType(head[:n]))
	default:
		// VHD spec "Hard Disk Footer Format": the footer (cookie "conectix") is the last 512 bytes;
		// a dynamic disk also has a copy at 0, used when the end is missing.
		var foot [8]byte
		if size >= 512 {
			if n, err := r.ReadAt(foot[:], size-512); n < len(foot) {
				return nil, fmt.Errorf("reading the last 512 bytes: %w", err)
			}
		}
		switch {
		case size >= 512 && string(foot[:]) == "conectix":
			img, err = openVHD(r, size, f, size-512)
		case size >= 512 && string(head[:8]) == "conectix":
			img, err = openVHD(r, size, f, 0)
		default:
			img, err = openRaw(r, size, f)
		}
	}
	if err != nil {
		return nil, err
	}
	return img, nil
}

// vmdkCreateType finds createType="X" in descriptor text, for messages.
func vmdkCreateType(text []byte) string {
	for _, line := range strings.Split(string(text), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "createType" {
			return "createType=" + strings.TrimSpace(v)
		}
	}
	return "no createType"
}

// baseImage holds what every reader shares.
type baseImage struct {
	r     io.ReaderAt
	f     *os.File // closed by Close; nil after OpenReaderAt
	size  int64    // virtual size
	fsize int64    // file size
	exts  []Extent
}

func (b *baseImage) Size() int64       { return b.size }
func (b *baseImage) Extents() []Extent { return b.exts }
func (b *baseImage) Close() error {
	if b.f == nil {
		return nil
	}
	err := b.f.Close()
	b.f = nil
	return err
}

// readAt reads exactly len(p) bytes of the file at off; a short read is a FormatError naming field.
func (b *baseImage) readAt(format, field string, p []byte, off int64) error {
	if off < 0 || off > b.fsize || int64(len(p)) > b.fsize-off {
		return formatErr(format, field, off, "%d bytes at offset %d run past the end of the file (%d bytes)", len(p), off, b.fsize)
	}
	n, err := b.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return formatErr(format, field, off, "short read: %d of %d bytes (file truncated?)", n, len(p))
	}
	return fmt.Errorf("%s: reading %s at offset %#x (+%d): %w", format, field, off, len(p), err)
}

// addRun appends [off, off+n) to exts, merging with the last extent when they touch.
func addRun(exts []Extent, off, n int64) []Extent {
	if k := len(exts); k > 0 && exts[k-1].End() == off {
		exts[k-1].Len += n
		return exts
	}
	return append(exts, Extent{off, n})
}

// clipExtents cuts extents at size.
func clipExtents(exts []Extent, size int64) []Extent {
	for len(exts) > 0 && exts[len(exts)-1].Off >= size {
		exts = exts[:len(exts)-1]
	}
	if k := len(exts); k > 0 && exts[k-1].End() > size {
		exts[k-1].Len = size - exts[k-1].Off
	}
	return exts
}

// rawImage is a raw file: guest byte i at file offset i.
type rawImage struct{ baseImage }

func openRaw(r io.ReaderAt, size int64, f *os.File) (Image, error) {
	img := &rawImage{baseImage{r: r, f: f, size: size, fsize: size}}
	exts, err := dataExtents(f, size)
	if err != nil {
		return nil, err
	}
	img.exts = exts
	return img, nil
}

// dataExtents maps the data of the first size bytes of f (SEEK_DATA/SEEK_HOLE), or gives one
// extent when f is nil.
func dataExtents(f *os.File, size int64) ([]Extent, error) {
	if f == nil {
		if size == 0 {
			return nil, nil
		}
		return []Extent{{0, size}}, nil
	}
	cur, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("mapping data extents: %w", err)
	}
	exts, err := fileExtents(f, size)
	if _, serr := f.Seek(cur, io.SeekStart); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("mapping data extents: %w", err)
	}
	return clipExtents(exts, size), nil
}

func (*rawImage) Format() string { return "raw" }

func (i *rawImage) ReadAt(p []byte, off int64) (int, error) {
	return i.r.ReadAt(p, off)
}

// guestRead handles the bounds of a guest ReadAt: it returns the part of p inside the disk and
// the error to return after filling it (io.EOF when p runs past the end).
func guestRead(p []byte, off, size int64) ([]byte, error) {
	if off < 0 {
		return nil, fmt.Errorf("negative offset %d", off)
	}
	if off >= size {
		if len(p) == 0 {
			return p[:0], nil
		}
		return p[:0], io.EOF
	}
	if int64(len(p)) > size-off {
		return p[:size-off], io.EOF
	}
	return p, nil
}
