package layers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// benchLayers makes 3 gzip layers of about 64 MiB of tar in total, many files of mixed size,
// with compressible but not trivial data.
func benchLayers(b *testing.B) ([]Layer, int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ls []Layer
	var total int64
	for li := 0; li < 3; li++ {
		var ents []ent
		size := 0
		for i := 0; size < 22<<20; i++ {
			n := 1 << (8 + rng.IntN(12)) // 256 B .. 512 KiB
			buf := make([]byte, n)
			for j := range buf {
				buf[j] = "abcdefghijklmnopqrstuvwxyz0123456789\n"[rng.IntN(37)]
			}
			ents = append(ents, fmt.Sprintf("d%d/f%d=%s", i%50, i, buf))
			size += n
		}
		raw := tarOf(b, ents...)
		total += int64(len(raw))
		ls = append(ls, blobLayer(fmt.Sprintf("L%d", li), gzipOf(b, raw), ""))
	}
	return ls, total
}

// BenchmarkFlatten measures Flatten with a consumer that does work of its own (hashing what it
// reads, standing in for the filesystem writer). With read-ahead the producer's decompression
// overlaps the consumer: compare with BenchmarkFlattenSerial, which first decompresses, then
// hashes, on one goroutine.
func BenchmarkFlatten(b *testing.B) {
	ls, total := benchLayers(b)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc := Flatten(context.Background(), ls)
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
		sha256Work(h)
	}
}

// BenchmarkFlattenSerial is the same work without overlap: each layer is decompressed and hashed
// on one goroutine (the floor Flatten's read-ahead should beat on two cores).
func BenchmarkFlattenSerial(b *testing.B) {
	ls, total := benchLayers(b)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := sha256.New()
		for _, l := range ls {
			rc, err := l.Open()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(h, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
		sha256Work(h)
	}
}

func sha256Work(h interface{ Sum([]byte) []byte }) { _ = h.Sum(nil) }
