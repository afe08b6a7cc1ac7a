package diskfmt

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	benchOnce sync.Once
	benchPath string
)

// benchDisk returns a 1 GiB disk, half data (4 MiB runs of non-zero bytes) and half holes.
// It is made once per test binary (so -count runs share it) and removed by TestMain.
func benchDisk(b *testing.B) Disk {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "diskfmt-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchPath = filepath.Join(dir, "half.raw")
		f, err := os.Create(benchPath)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		data := pattern(int(4*mib), 1)
		for off := int64(0); off < gib; off += 8 * mib {
			if _, err := f.WriteAt(data, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Truncate(gib); err != nil {
			b.Fatal(err)
		}
	})
	if benchPath == "" {
		b.Fatal("benchmark disk not made")
	}
	return openDisk(b, benchPath)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchPath != "" {
		os.RemoveAll(filepath.Dir(benchPath))
	}
	os.Exit(code)
}

func benchWrite(b *testing.B, f Format) {
	d := benchDisk(b)
	b.SetBytes(d.Size())
	b.ResetTimer()
	for b.Loop() {
		if err := f.Write(context.Background(), io.Discard, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQcow2Write: MB/s are guest bytes (1 GiB, half holes) per second, output discarded.
func BenchmarkQcow2Write(b *testing.B) { benchWrite(b, qcow2{}) }

// BenchmarkRawWriteStream: raw to a non-file writer (holes written as zeros).
func BenchmarkRawWriteStream(b *testing.B) { benchWrite(b, raw{}) }

// BenchmarkRawWriteFile: raw to a file in the same directory (holes kept).
func BenchmarkRawWriteFile(b *testing.B) {
	d := benchDisk(b)
	out := benchPath + ".out"
	defer os.Remove(out)
	b.SetBytes(d.Size())
	b.ResetTimer()
	for b.Loop() {
		if err := WriteFile(context.Background(), out, raw{}, d); err != nil {
			b.Fatal(err)
		}
	}
}
