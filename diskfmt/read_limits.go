package diskfmt

import "math"

// What a reader may make of a file, whatever its headers and tables claim (see "# Limits" in
// doc.go): the guest data it maps is bounded by the bytes the file really holds.

// maxInflateRatio is the most output one byte of deflate (RFC 1951) data can give: a 258-byte
// match coded in 2 bits (1-bit literal/length code, 1-bit distance code) is 1032 bytes per byte.
// It bounds the guest bytes of compressed units (qcow2 compressed clusters, VMDK grains) a file
// of n bytes can hold when no two units share compressed bytes: 1032 × n.
const maxInflateRatio = 1032

// budget is a number of bytes a reader may still map; take fails once more would be mapped.
type budget struct{ left int64 }

// fileBudget is the budget of units that each take their own file space: the file size.
func fileBudget(fsize int64) budget { return budget{left: fsize} }

// inflateBudget is the budget of guest bytes that compressed units may give: maxInflateRatio
// times the file size (saturating).
func inflateBudget(fsize int64) budget {
	if fsize > math.MaxInt64/maxInflateRatio {
		return budget{left: math.MaxInt64}
	}
	return budget{left: fsize * maxInflateRatio}
}

// take spends n bytes (n >= 0) and reports whether the budget allowed it.
func (b *budget) take(n int64) bool {
	if n > b.left {
		b.left = -1
		return false
	}
	b.left -= n
	return true
}

// hostUnits marks the host units (qcow2 clusters) of a file a table references, so that a unit
// referenced twice is found. Memory: one bit per unit of the file.
type hostUnits struct {
	bits  []uint64
	shift uint // log2 of the unit size
}

func newHostUnits(fsize int64, shift uint) *hostUnits {
	n := (fsize>>shift + 63) / 64
	return &hostUnits{bits: make([]uint64, n), shift: shift}
}

// claim marks the unit at file offset off (unit-aligned, 0 <= off < file size) and reports
// whether it was free.
func (h *hostUnits) claim(off int64) bool {
	u := off >> h.shift
	w, m := u/64, uint64(1)<<(u%64)
	if w >= int64(len(h.bits)) || h.bits[w]&m != 0 {
		return false
	}
	h.bits[w] |= m
	return true
}

// runCollector gathers the allocated runs of one table (L2 table, grain table) and appends them
// to an extent list. A table of more than maxExtentRuns runs becomes one extent from its first to
// its last allocated unit when that extent is at most twice the allocated bytes, to keep the list
// short without making it claim much more than the data: the extents always total at most twice
// the allocated units, and there are never more extents than allocated units.
type runCollector struct {
	runs  []Extent
	bytes int64 // allocated bytes in runs
}

func (t *runCollector) add(off, n int64) {
	t.runs = addRun(t.runs, off, n)
	t.bytes += n
}

func (t *runCollector) flush(exts []Extent) []Extent {
	if len(t.runs) == 0 {
		return exts
	}
	first, last := t.runs[0], t.runs[len(t.runs)-1]
	if span := last.End() - first.Off; len(t.runs) > maxExtentRuns && span <= 2*t.bytes {
		t.runs = append(t.runs[:0], Extent{first.Off, span})
	}
	for _, r := range t.runs {
		exts = addRun(exts, r.Off, r.Len)
	}
	t.runs, t.bytes = t.runs[:0], 0
	return exts
}
