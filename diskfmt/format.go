package diskfmt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Format is an output disk format.
type Format interface {
	// Name is the format's --format name: "raw", "qcow2".
	Name() string
	// Write writes the whole disk d to w. Each format documents what it needs of w beyond
	// io.Writer (raw uses Seek and Truncate when w is a regular file; qcow2 is strictly sequential).
	Write(ctx context.Context, w io.Writer, d Disk) error
}

type registered struct {
	f    Format
	exts []string // lower case, with the leading dot, e.g. ".qcow2", ".tar.gz"
}

var formats []registered

// register adds a format; called from each format file's init.
func register(f Format, exts ...string) {
	for _, r := range formats {
		if r.f.Name() == f.Name() {
			panic("diskfmt: format " + f.Name() + " registered twice")
		}
	}
	formats = append(formats, registered{f, exts})
}

// Names returns the names of the known formats, sorted.
func Names() []string {
	names := make([]string, 0, len(formats))
	for _, r := range formats {
		names = append(names, r.f.Name())
	}
	slices.Sort(names)
	return names
}

// Lookup returns the format with the given --format name.
func Lookup(name string) (Format, error) {
	for _, r := range formats {
		if r.f.Name() == name {
			return r.f, nil
		}
	}
	return nil, fmt.Errorf("diskfmt: unknown format %q (known: %s)", name, strings.Join(Names(), ", "))
}

// FromPath returns the format for an output path by its extension (case-insensitive; the longest
// matching extension wins): .raw and .img give raw, .qcow2 gives qcow2.
func FromPath(path string) (Format, error) {
	lower := strings.ToLower(path)
	var best Format
	bestLen := 0
	for _, r := range formats {
		for _, e := range r.exts {
			if len(e) > bestLen && strings.HasSuffix(lower, e) {
				best, bestLen = r.f, len(e)
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("diskfmt: no format for the extension of %q (known: %s)", path, strings.Join(knownExts(), ", "))
	}
	return best, nil
}

func knownExts() []string {
	var all []string
	for _, r := range formats {
		all = append(all, r.exts...)
	}
	slices.Sort(all)
	return all
}

// ProgressFunc receives progress of a Write: done grows from 0 to total. The unit is bytes of the
// guest passed over (holes count as passed when skipped); a format that passes over the guest twice
// (qcow2: find zero clusters, then copy) reports total = 2 × size. It is called from the writing
// goroutine, at most about every 4 MiB and once at the end with done == total.
type ProgressFunc func(done, total int64)

type progressKey struct{}

// WithProgress returns a context that makes Write report its progress to fn.
func WithProgress(ctx context.Context, fn ProgressFunc) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// progress throttles ProgressFunc calls.
type progress struct {
	fn          ProgressFunc
	done, total int64
	last        int64
}

const progressStep = 4 << 20

func newProgress(ctx context.Context, total int64) *progress {
	fn, _ := ctx.Value(progressKey{}).(ProgressFunc)
	return &progress{fn: fn, total: total}
}

// to records that the work up to done (absolute) is finished.
func (p *progress) to(done int64) {
	p.done = min(done, p.total)
	if p.fn != nil && (p.done-p.last >= progressStep || p.done == p.total) && p.done != p.last {
		p.last = p.done
		p.fn(p.done, p.total)
	}
}

// finish reports done == total once, even for an empty disk.
func (p *progress) finish() {
	if p.fn != nil && (p.last != p.total || p.total == 0) {
		p.last = p.total
		p.fn(p.total, p.total)
	}
}

// zeros is a read-only block of zeros, for comparisons and for writing holes.
var zeros = make([]byte, 1<<20)

// isZero reports whether p is all zero bytes.
func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeros))
		if !bytes.Equal(p[:n], zeros[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}
