package initrd

import (
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Each open function returns a decoder of one segment, reading the input from the segment's
// magic, that reports io.EOF at the end of the segment's stream having read no byte past it, so
// the next segment is found where the kernel finds it (the kernel's decompressors report how much
// they consumed). The input is an io.ByteReader, which keeps flate and bzip2 from reading ahead.

// openGzip reads one gzip member (RFC 1952): the kernel's gunzip stops after one, and a next
// member is a next segment.
func openGzip(r *Reader) (io.Reader, func(), error) {
	z, err := gzip.NewReader(r.in)
	if err != nil {
		return nil, nil, err
	}
	z.Multistream(false)
	return z, nil, nil
}

// openZstd reads one zstd frame (the kernel's unzstd stops when its frame is complete), passed
// through a walker that ends it; the decoder runs in the caller's goroutine with a bounded
// window.
func openZstd(r *Reader) (io.Reader, func(), error) {
	d, err := zstd.NewReader(newZstdWalker(r.in),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(r.lim.window)), zstd.WithDecoderMaxMemory(uint64(r.lim.window)))
	if err != nil {
		return nil, nil, err
	}
	return d, d.Close, nil
}

// openXz reads one xz stream (the kernel's unxz reads one; stream padding is zero padding to the
// next segment), through a walker that ends it and checks each block's dictionary size before
// the decoder allocates it: the decoder takes the larger of DictCap and the block's own.
func openXz(r *Reader) (io.Reader, func(), error) {
	d, err := xz.ReaderConfig{DictCap: lzma.MinDictCap, SingleStream: true}.NewReader(newXzWalker(r.in, r.lim.window))
	if err != nil {
		return nil, nil, err
	}
	return d, nil, nil
}

// openLzma reads one .lzma stream ("lzma alone": properties, dictionary size, uncompressed size,
// then the range-coded data, ending at the size or an end marker). The dictionary is allocated
// from the header, so it is bounded by DictCap.
func openLzma(r *Reader) (io.Reader, func(), error) {
	d, err := lzma.ReaderConfig{DictCap: int(min(r.lim.window, lzma.MaxDictCap))}.NewReader(r.in)
	if err != nil {
		return nil, nil, err
	}
	return d, nil, nil
}

// openLz4 reads the lz4 legacy format (`lz4 -l`: magic 0x184C2102, then blocks of a 4-byte
// compressed size and the data, each at most 8 MiB decompressed). It has no end marker: as in the
// kernel's unlz4, the segment runs to the end of the input.
func openLz4(r *Reader) (io.Reader, func(), error) {
	return lz4.NewReader(r.in), nil, nil
}

// openBzip2 reads bzip2 streams. After a stream compress/bzip2 reads two more bytes to look for a
// concatenated "BZ" and goes on with it (so bzip2 streams back to back are one segment here, two
// in the kernel); when they are something else (the next segment, zero padding) they are given
// back to the input and the segment ends there.
func openBzip2(r *Reader) (io.Reader, func(), error) {
	return &bzip2Reader{r: bzip2.NewReader(r.in), in: r.in}, nil, nil
}

type bzip2Reader struct {
	r    io.Reader
	in   *input
	done bool
}

func (b *bzip2Reader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	var se bzip2.StructuralError
	if errors.As(err, &se) && string(se) == "bad magic value in continuation file" && b.in.unread(2) {
		b.done = true
		return n, io.EOF
	}
	return n, err
}

// limitErr marks a decoder's refusal of a window or dictionary over our limit as ErrLimit.
func limitErr(err error) error {
	var dict *lzma.ErrDictSize
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.As(err, &dict) {
		return fmt.Errorf("%w: %w", err, ErrLimit)
	}
	return err
}
