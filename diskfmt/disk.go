package diskfmt

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Extent is a range of a disk that may hold data; everything outside a disk's extents reads as zeros.
type Extent struct{ Off, Len int64 }

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// Disk is a read-only view of a disk image.
type Disk interface {
	io.ReaderAt
	// Size is the guest size in bytes.
	Size() int64
	// Extents lists the ranges that may hold data: sorted, non-overlapping and within [0, Size)
	// (empty extents are allowed and ignored). Bytes outside them read as zeros. The caller must
	// not modify the returned slice.
	Extents() []Extent
}

// OpenFile makes a Disk from a (sparse) raw file. Its size is the file's size now and its extents
// come from SEEK_DATA/SEEK_HOLE; when the filesystem does not support them the whole file is one
// extent. The file's offset is restored before OpenFile returns; the Disk reads with ReadAt only.
// The caller keeps ownership of f and must keep it open (and unchanged) while the Disk is used.
func OpenFile(f *os.File) (Disk, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("diskfmt: opening disk %s: %w", f.Name(), err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("diskfmt: opening disk %s: not a regular file (mode %v)", f.Name(), fi.Mode())
	}
	size := fi.Size()
	cur, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("diskfmt: opening disk %s: %w", f.Name(), err)
	}
	exts, err := fileExtents(f, size)
	if _, serr := f.Seek(cur, io.SeekStart); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("diskfmt: mapping data extents of %s: %w", f.Name(), err)
	}
	return &fileDisk{f: f, size: size, exts: exts}, nil
}

// fileExtents walks a file's data with lseek(SEEK_DATA) and lseek(SEEK_HOLE).
func fileExtents(f *os.File, size int64) ([]Extent, error) {
	var exts []Extent
	for off := int64(0); off < size; {
		data, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // no data at or after off
			break
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			if size == 0 {
				return nil, nil
			}
			return []Extent{{0, size}}, nil // no SEEK_DATA support: all data
		}
		if err != nil {
			return nil, fmt.Errorf("SEEK_DATA from %d: %w", off, err)
		}
		if data >= size {
			break
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE from %d: %w", data, err)
		}
		if hole <= data { // cannot happen on a sane filesystem; do not loop forever
			return nil, fmt.Errorf("SEEK_HOLE from %d returned %d", data, hole)
		}
		hole = min(hole, size)
		if n := len(exts); n > 0 && exts[n-1].End() == data {
			exts[n-1].Len = hole - exts[n-1].Off
		} else {
			exts = append(exts, Extent{data, hole - data})
		}
		off = hole
	}
	return exts, nil
}

type fileDisk struct {
	f    *os.File
	size int64
	exts []Extent
}

func (d *fileDisk) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }
func (d *fileDisk) Size() int64                             { return d.size }
func (d *fileDisk) Extents() []Extent                       { return d.exts }

// checkDisk verifies the Extents contract, so a writer can rely on it.
func checkDisk(d Disk) error {
	size := d.Size()
	if size < 0 {
		return fmt.Errorf("disk size %d is negative", size)
	}
	var end int64
	for i, e := range d.Extents() {
		if e.Len < 0 || e.Off < end || e.End() > size || e.End() < e.Off {
			return fmt.Errorf("disk extent %d [%d, +%d) is negative, unsorted, overlapping or beyond size %d",
				i, e.Off, e.Len, size)
		}
		end = e.End()
	}
	return nil
}

// readFull reads len(p) bytes at off from d; bytes at or past d.Size() read as zeros.
func readFull(d Disk, p []byte, off int64) error {
	n := len(p)
	if rest := d.Size() - off; int64(n) > rest {
		n = int(max(rest, 0))
		clear(p[n:])
	}
	got, err := d.ReadAt(p[:n], off)
	if got == n {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading disk at %d (+%d): %w", off, n, err)
}
