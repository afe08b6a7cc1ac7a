package initrd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"testing"
)

// fuzzLimits are small, so that an input can reach every limit within the fuzzer's time.
var fuzzLimits = limits{
	bytes:    1 << 20,
	entries:  1000,
	name:     4096,
	link:     256,
	pad:      4096,
	segments: 8,
	window:   1 << 20,
	builtin:  64 << 10,
	names:    64 << 10,
}

// FuzzReader runs Summarize and a full Reader pass (every entry's data read) on arbitrary bytes
// under fuzzLimits: no panic, every error an *Error, nothing past a limit.
func FuzzReader(f *testing.F) {
	small := newc("070701", file("a", "data"), link("l", "a"))
	for _, magic := range []string{"070701", "070702"} {
		for _, c := range []string{"none", "gzip", "zstd", "xz", "lz4", "lzma"} {
			f.Add(compress(f, c, sample(magic)))
		}
	}
	if _, err := exec.LookPath("bzip2"); err == nil {
		f.Add(compress(f, "bzip2", sample("070701")))
	}
	f.Add(cat(small, zeros(8), compress(f, "zstd", sample("070701"))))   // early microcode
	f.Add(cat(compress(f, "gzip", small), compress(f, "xz", small)))     // compressed back to back
	f.Add(compress(f, "gzip", cat(small, zeros(512), sample("070701")))) // two archives in a stream
	f.Add(raw("070701", file("a", ""), 0, 0xFFFFFFFF, 0, ""))
	f.Add(raw("070701", file("big", ""), 0xFFFFFFFF, -1, 0, "0123456789"))
	f.Add(newc("070701", file("usr/lib/modules/6.1.0-1/modules.builtin", "kernel/a/b-c.ko\n")))
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := fuzzLimits
		s, err := summarize(context.Background(), bytes.NewReader(b), lim)
		if s == nil {
			t.Fatalf("no summary (error %v)", err)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T, not an *Error: %v", err, err)
			}
			if e.Segment >= len(s.Segments) {
				t.Fatalf("error in segment %d of %d: %v", e.Segment, len(s.Segments), err)
			}
		}
		if len(s.Segments) > lim.segments || s.Files > lim.entries {
			t.Fatalf("%d segments, %d files: over the limits", len(s.Segments), s.Files)
		}

		rd := newReader(context.Background(), bytes.NewReader(b), lim)
		var data int64
		for {
			e, err := rd.Next()
			if err != nil {
				if err != io.EOF && !errors.As(err, new(*Error)) {
					t.Fatalf("Next: %T, not an *Error: %v", err, err)
				}
				break
			}
			if len(e.Name) >= lim.name || len(e.Linkname) > lim.link || e.Size < 0 || e.Size > 1<<32-1 {
				t.Fatalf("entry %+v over a limit", e)
			}
			n, err := io.Copy(io.Discard, rd)
			if n > e.Size || err == nil && n != e.Size {
				t.Fatalf("%s: read %d bytes of %d (error %v)", e.Name, n, e.Size, err)
			}
			data += n
		}
		if data > lim.bytes || rd.total > lim.bytes {
			t.Fatalf("%d bytes of data, %d archive bytes: over %d", data, rd.total, lim.bytes)
		}
	})
}
