// Command floor is the floor of any build that must read its layers (issue #17): it decompresses
// each layer blob named on the command line once, with the same decompressors imgfab uses
// (klauspost/compress gzip and zstd, chosen by the blob's magic; other blobs are read as they
// are), discards the bytes, and prints the wall time in seconds and the bytes out.
//
//	go run ./testdata/floor BLOB...
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func main() {
	start := time.Now()
	var total int64
	for _, path := range os.Args[1:] {
		n, err := decompress(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "floor: %s: %v\n", path, err)
			os.Exit(1)
		}
		total += n
	}
	fmt.Printf("%.3f %d\n", time.Since(start).Seconds(), total)
}

func decompress(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(4)
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return 0, err
		}
		r = z
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br)
		if err != nil {
			return 0, err
		}
		defer z.Close()
		r = z
	}
	return io.Copy(io.Discard, r)
}
