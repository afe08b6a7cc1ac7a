package diskfmt

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"
)

// gce writes a Google Compute Engine image tarball: a gzip'd GNU tar holding only disk.raw, the
// disk padded with zeros to a whole GiB (GCE image creation hangs on other sizes).
//
// The gzip member (RFC 1952) holds one deflate stream (RFC 1951) made of independent segments
// (gzipseg.go): the tar header, each 1 MiB of the disk, the tar trailer; compressed on all cores,
// the same bytes for any number of cores.
type gce struct{}

var _ Format = gce{}

func init() { register(gce{}, ".tar.gz") }

func (gce) Name() string { return "gce" }

const (
	gceAlign    = 1 << 30 // disk.raw is a whole number of GiB
	gceFileName = "disk.raw"
)

// Write writes d to w as a GCE image tarball, strictly sequentially (w may be a pipe). The tar
// entry's modification time is the identity's Time (clamped at the Unix epoch). A disk larger
// than gceMaxDisk (64 TiB, GCE's largest) is refused before anything is written. The context is
// checked before every 1 MiB segment.
func (g gce) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("gce: %w", err)
	}
	if d.Size() > gceMaxDisk {
		return fmt.Errorf("gce: the disk is %d bytes, more than the %d (64 TiB) a GCE image may hold (and imgfab reads back)", d.Size(), int64(gceMaxDisk))
	}
	size := ceilDiv(d.Size(), gceAlign) * gceAlign
	mtime := identityFrom(ctx).Time.Truncate(time.Second)
	if mtime.Before(time.Unix(0, 0)) {
		mtime = time.Unix(0, 0)
	}
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     gceFileName,
		Mode:     0o644,
		Size:     size,
		ModTime:  mtime.UTC(),
		Format:   tar.FormatGNU,
	})
	if err != nil {
		return fmt.Errorf("gce: tar header for %s (%d bytes): %w", gceFileName, size, err)
	}
	if hdr.Len() != 512 {
		return fmt.Errorf("gce: tar header is %d bytes, want one 512-byte block", hdr.Len())
	}

	prog := newProgress(ctx, size)
	// The tar trailer: two zero blocks (size is a multiple of 512, so no padding before them).
	if err := writeGzipSegments(ctx, w, hdr.Bytes(), d, size, make([]byte, 1024), prog); err != nil {
		return fmt.Errorf("gce: %s of %d bytes: %w", gceFileName, size, err)
	}
	prog.finish()
	return nil
}
