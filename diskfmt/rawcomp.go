package diskfmt

import (
	"context"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// rawComp is a raw disk image, every byte of it (zeros for holes), through a stream compressor:
// raw.zst (zstd), raw.xz (xz) or raw.gz (gzip). It is one sequential stream, so it can go to a
// pipe. The output depends only on the guest bytes.
type rawComp struct {
	name, compress string
}

var (
	rawZst = rawComp{"raw.zst", "zstd"}
	rawXz  = rawComp{"raw.xz", "xz"}
	rawGz  = rawComp{"raw.gz", "gzip"}
)

var (
	_ Format       = rawComp{}
	_ configurable = rawComp{}
	_ configurable = raw{}
)

func init() {
	register(rawZst, ".raw.zst", ".img.zst")
	register(rawXz, ".raw.xz", ".img.xz")
	register(rawGz, ".raw.gz", ".img.gz")
}

func (r rawComp) Name() string { return r.name }

// withOptions accepts the format's own compression (or none given).
func (r rawComp) withOptions(o Options) (Format, error) {
	if o.Compress == "" || o.Compress == r.compress {
		return r, nil
	}
	return nil, fmt.Errorf("diskfmt: format %s is compressed with %s, not %q (valid: %s)", r.name, r.compress, o.Compress, r.compress)
}

// withOptions turns raw into a compressed raw format: Compress "zstd", "xz" or "gzip".
func (raw) withOptions(o Options) (Format, error) {
	switch o.Compress {
	case "", "none":
		return raw{}, nil
	case "zstd":
		return rawZst, nil
	case "xz":
		return rawXz, nil
	case "gzip":
		return rawGz, nil
	}
	return nil, fmt.Errorf("diskfmt: format raw has no compression %q (valid: none, zstd, xz, gzip)", o.Compress)
}

const (
	// rawZstdConcurrency is fixed, not GOMAXPROCS: the zstd stream encoder splits its input into
	// jobs whose size depends on the window only, but a fixed count keeps the output independent
	// of the machine by construction.
	rawZstdConcurrency = 4
	rawZstdLevel       = zstd.SpeedDefault // about zstd -3, the zstd CLI's default
)

// Write writes d to w as a compressed stream of the raw image (zeros for holes).
//
//   - zstd: one frame with a content checksum, klauspost/compress at its default level, compressed
//     in parallel jobs on rawZstdConcurrency goroutines (the output does not depend on GOMAXPROCS).
//   - xz: ulikunitz/xz defaults (LZMA2, 8 MiB dictionary, CRC64), one goroutine.
//   - gzip: one member, no name, no comment, mtime 0, deflate segments of 1 MiB compressed on all
//     cores by internal/deflate (gzipseg.go); the output does not depend on GOMAXPROCS.
func (r rawComp) Write(ctx context.Context, w io.Writer, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	if r.compress == "gzip" {
		prog := newProgress(ctx, d.Size())
		if err := writeGzipSegments(ctx, w, nil, d, d.Size(), nil, prog); err != nil {
			return fmt.Errorf("%s: %d-byte disk: %w", r.name, d.Size(), err)
		}
		prog.finish()
		return nil
	}
	zw, err := r.newWriter(w)
	if err != nil {
		return fmt.Errorf("%s: setting up %s: %w", r.name, r.compress, err)
	}
	if err := writeRawStream(ctx, zw, d); err != nil {
		zw.Close()
		return fmt.Errorf("%s: writing %d-byte disk: %w", r.name, d.Size(), err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("%s: finishing the %s stream: %w", r.name, r.compress, err)
	}
	return nil
}

func (r rawComp) newWriter(w io.Writer) (io.WriteCloser, error) {
	switch r.compress {
	case "zstd":
		return zstd.NewWriter(w, zstd.WithEncoderLevel(rawZstdLevel),
			zstd.WithEncoderConcurrency(rawZstdConcurrency), zstd.WithConcurrentBlocks(true))
	case "xz":
		return xz.NewWriter(w)
	}
	return nil, fmt.Errorf("unknown compression %q", r.compress)
}
