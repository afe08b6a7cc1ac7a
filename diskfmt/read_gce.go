package diskfmt

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
)

// IsGCETarball reports whether the file at path is a GCE image tarball: gzip whose first tar
// entry is named disk.raw. Reading stops after the first tar header.
func IsGCETarball(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || magic != [2]byte{0x1f, 0x8b} {
		return false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return false, nil
	}
	hdr, err := tar.NewReader(zr).Next()
	return err == nil && hdr.Name == "disk.raw", nil
}

// openGCE reads a GCE image tarball. gzip cannot be read at random offsets, so disk.raw is
// decompressed once into an unlinked temporary file in os.TempDir() (sparse: runs of zeros stay
// holes, so it takes the disk's data, not its size) and read as raw; Close releases it, and a
// killed process leaves nothing behind. The tarball must hold exactly one regular entry,
// disk.raw, as GCE requires.
func openGCE(ctx context.Context, path string) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, formatErr("gce", "gzip header", 0, "%v", err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		return nil, formatErr("gce", "tar header", -1, "first entry: %v", err)
	}
	if hdr.Name != "disk.raw" || (hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeGNUSparse) {
		return nil, formatErr("gce", "tar entry", -1, "first entry is %q (type %q), want the regular file disk.raw", hdr.Name, hdr.Typeflag)
	}
	if hdr.Size <= 0 || hdr.Size%512 != 0 || hdr.Size > gceMaxDisk {
		return nil, formatErr("gce", "disk.raw size", -1, "%d bytes: want a positive multiple of 512, at most %d (64 TiB)", hdr.Size, int64(gceMaxDisk))
	}
	tmp, err := os.CreateTemp("", "imgfab-gce-*.raw")
	if err != nil {
		return nil, fmt.Errorf("gce: temporary file for disk.raw: %w", err)
	}
	os.Remove(tmp.Name()) // unlinked: the open descriptor keeps it until Close
	fail := func(err error) (Image, error) {
		tmp.Close()
		return nil, err
	}
	n, err := spoolSparse(tmp, tr)
	if err != nil {
		return fail(fmt.Errorf("gce: decompressing disk.raw into %s after %d of %d bytes: %w", os.TempDir(), n, hdr.Size, err))
	}
	if n != hdr.Size {
		return fail(formatErr("gce", "disk.raw", -1, "%d bytes read, the tar header says %d", n, hdr.Size))
	}
	if next, err := tr.Next(); err == nil {
		return fail(formatErr("gce", "tar entry", -1, "a second entry %q: a GCE tarball holds only disk.raw", next.Name))
	} else if err != io.EOF {
		return fail(formatErr("gce", "tar trailer", -1, "%v", err))
	}
	if err := tmp.Truncate(hdr.Size); err != nil {
		return fail(fmt.Errorf("gce: sizing the temporary disk.raw: %w", err))
	}
	img, err := openRaw(tmp, hdr.Size, tmp)
	if err != nil {
		return fail(err)
	}
	return gceImage{img}, nil
}

// gceMaxDisk bounds what a tarball's header may make openGCE spool (the largest persistent disk
// GCE makes is 64 TiB).
const gceMaxDisk = 64 << 40

// gceImage is the spooled disk.raw, reporting its container format.
type gceImage struct{ Image }

func (gceImage) Format() string { return "gce" }

// spoolSparse copies r to f, seeking over 64 KiB blocks that are all zero.
func spoolSparse(f *os.File, r io.Reader) (int64, error) {
	const blk = 64 << 10
	buf := make([]byte, blk)
	zero := make([]byte, blk)
	var off int64
	for {
		n := 0
		var err error
		for n < blk && err == nil {
			var m int
			m, err = r.Read(buf[n:])
			n += m
		}
		if n > 0 {
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, werr := f.WriteAt(buf[:n], off); werr != nil {
					return off, werr
				}
			}
			off += int64(n)
		}
		if err == io.EOF {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}
