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

// Names returns the names of the known formats, sorted. The compressed raw formats are listed
// under their own names ("raw.zst", "raw.xz", "raw.gz").
func Names() []string {
	names := make([]string, 0, len(formats))
	for _, r := range formats {
		names = append(names, r.f.Name())
	}
	slices.Sort(names)
	return names
}

// Lookup returns the format with the given --format name, with default options (qcow2 is then
// uncompressed).
func Lookup(name string) (Format, error) {
	for _, r := range formats {
		if r.f.Name() == name {
			return r.f, nil
		}
	}
	return nil, fmt.Errorf("diskfmt: unknown format %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Options are the settings of a format that [New] applies.
type Options struct {
	// Compress is the compression: "" or "none" for none; "deflate" or "zstd" for qcow2 (each
	// cluster compressed on its own); "zstd", "xz" or "gzip" for raw, which turns it into
	// raw.zst, raw.xz or raw.gz (a compressed raw format also accepts its own compression).
	Compress string
}

// configurable is a Format that takes Options; formats without it take none.
type configurable interface {
	Format
	// withOptions returns the format with o applied, or an error listing what is valid.
	withOptions(o Options) (Format, error)
}

// New returns the format with the given --format name (see [Names]) and options. The error for
// an option the format does not take lists the valid values for that format.
func New(name string, o Options) (Format, error) {
	f, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if c, ok := f.(configurable); ok {
		return c.withOptions(o)
	}
	if o.Compress != "" && o.Compress != "none" {
		return nil, fmt.Errorf("diskfmt: format %s takes no compression option, got %q (valid: none)", name, o.Compress)
	}
	return f, nil
}

// FromPath returns the format for an output path by its extension (case-insensitive; the longest
// matching extension wins): .raw and .img give raw, .qcow2 gives qcow2, .raw.zst, .raw.xz and
// .raw.gz (or .img.zst, .img.xz, .img.gz) give the compressed raw formats.
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

// MaxSize is the largest disk the named format holds, in bytes, or 0 when only the filesystem
// that receives it limits it (raw and the compressed raws). The writers refuse a larger disk
// before writing anything; a build checks its --size against it before any work.
func MaxSize(name string) int64 {
	switch name {
	case "qcow2":
		return qcowMaxL1 * qcowL2Span
	case "vmdk":
		return vmdkMaxSize
	case "vhd", "vhd-dynamic":
		return vhdMaxSize
	case "gce":
		return gceMaxDisk
	}
	return 0
}
