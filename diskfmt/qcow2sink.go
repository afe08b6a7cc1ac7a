package diskfmt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"
)

// Qcow2Sink is a disk being built that is written straight into a qcow2 image, so that a build to
// qcow2 writes its bytes once, while the layers stream, instead of into a scratch raw that is read
// back and copied after the build (issue 17).
//
// Each 64 KiB guest cluster gets the next host cluster the first time non-zero bytes are written
// to it; zeros written to a cluster that has none are dropped (it reads as zeros anyway), and
// later writes to an allocated cluster go in place. So the data clusters lie in the order the
// build first wrote them, not in guest order as the "qcow2" Format places them. [Qcow2Sink.Finish]
// then appends the L2 tables, the L1 table and the refcount structures after the data and writes
// the header into cluster 0. The image holds the same guest disk as the qcow2 `convert` makes of
// it, and the same bytes for the same writes in the same order (a build writes in a fixed order),
// but not the same bytes as that convert.
//
// It reads and writes the guest (io.ReaderAt, io.WriterAt; writes past the end grow it, as a
// file does) and has Read, Seek, Stat, Truncate and Close, so that go-diskfs can format a FAT
// filesystem and write a partition table in it; Truncate sets the guest size. It is a [Disk]
// too, for other outputs of the same build. Not safe for concurrent writes. Memory: 32 KiB of
// mapping per 512 MiB of guest that holds data.
type Qcow2Sink struct {
	f        sinkFile
	size     int64                            // guest bytes
	pos      int64                            // Read and Seek offset
	maps     map[int64]*[qcowL2Entries]uint32 // by L2 range: host cluster of each guest cluster, 0: none
	next     int64                            // next free host cluster; cluster 0 is the header
	orphans  []int64                          // host clusters of guest clusters a Truncate cut off
	finished bool
}

// sinkFile is the file a Qcow2Sink writes: an *os.File, or a WritebackFile.
type sinkFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Name() string
}

// NewQcow2Sink starts a qcow2 image in f, which must be empty.
func NewQcow2Sink(f sinkFile) *Qcow2Sink {
	return &Qcow2Sink{f: f, maps: map[int64]*[qcowL2Entries]uint32{}, next: 1}
}

var _ Disk = (*Qcow2Sink)(nil)

// host returns the host cluster of guest cluster c, 0 if it has none.
func (s *Qcow2Sink) host(c int64) int64 {
	if m := s.maps[c/qcowL2Entries]; m != nil {
		return int64(m[c%qcowL2Entries])
	}
	return 0
}

func (s *Qcow2Sink) alloc(c int64) (int64, error) {
	if s.next > 1<<32-1 {
		return 0, fmt.Errorf("qcow2: more than 2^32 clusters")
	}
	m := s.maps[c/qcowL2Entries]
	if m == nil {
		m = new([qcowL2Entries]uint32)
		s.maps[c/qcowL2Entries] = m
	}
	h := s.next
	m[c%qcowL2Entries] = uint32(h)
	s.next++
	return h, nil
}

// span is a run of guest bytes p[i:j] at guest offset off whose clusters lie back to back on the
// host from host offset at (at < 0: no host clusters).
type span struct {
	i, j int
	at   int64
}

// spans cuts [off, off+n) into spans; with allocate, clusters get host clusters where data[i:j]
// holds a non-zero byte.
func (s *Qcow2Sink) spans(off int64, n int, data []byte, allocate bool, fn func(span) error) error {
	var cur span
	for i := 0; i < n; {
		g := off + int64(i)
		c, in := g/qcowCluster, g%qcowCluster
		k := int(min(int64(n-i), qcowCluster-in))
		h := s.host(c)
		if h == 0 && allocate && !isZero(data[i:i+k]) {
			var err error
			if h, err = s.alloc(c); err != nil {
				return err
			}
		}
		at := int64(-1)
		if h != 0 {
			at = h*qcowCluster + in
		}
		same := cur.at < 0 && at < 0 || cur.at >= 0 && at >= 0 && cur.at+int64(cur.j-cur.i) == at
		if cur.j > cur.i && same {
			cur.j += k
		} else {
			if cur.j > cur.i {
				if err := fn(cur); err != nil {
					return err
				}
			}
			cur = span{i: i, j: i + k, at: at}
		}
		i += k
	}
	if cur.j > cur.i {
		return fn(cur)
	}
	return nil
}

// WriteAt writes p at guest offset off.
func (s *Qcow2Sink) WriteAt(p []byte, off int64) (int, error) {
	if s.finished {
		return 0, errors.New("qcow2: write after Finish")
	}
	if off < 0 {
		return 0, fmt.Errorf("qcow2: write at negative offset %d", off)
	}
	err := s.spans(off, len(p), p, true, func(sp span) error {
		if sp.at < 0 {
			return nil // zeros on clusters that have none
		}
		_, err := s.f.WriteAt(p[sp.i:sp.j], sp.at)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("qcow2: writing %d bytes at guest offset %d: %w", len(p), off, err)
	}
	s.size = max(s.size, off+int64(len(p)))
	return len(p), nil
}

// ReadAt reads the guest at off.
func (s *Qcow2Sink) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2: read at negative offset %d", off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.size-off))
	err := s.spans(off, n, nil, false, func(sp span) error {
		q := p[sp.i:sp.j]
		if sp.at < 0 {
			clear(q)
			return nil
		}
		k, err := s.f.ReadAt(q, sp.at)
		if err == io.EOF { // the end of the last cluster was never written: zeros
			clear(q[k:])
			err = nil
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("qcow2: reading %d bytes at guest offset %d: %w", n, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Size is the guest size.
func (s *Qcow2Sink) Size() int64 { return s.size }

// Extents are the guest clusters that have host clusters, merged, in guest order.
func (s *Qcow2Sink) Extents() []Extent {
	var out []Extent
	keys := make([]int64, 0, len(s.maps))
	for k := range s.maps {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for i, h := range s.maps[k] {
			if h == 0 {
				continue
			}
			g := (k*qcowL2Entries + int64(i)) * qcowCluster
			if g >= s.size {
				break
			}
			e := Extent{Off: g, Len: min(qcowCluster, s.size-g)}
			if n := len(out); n > 0 && out[n-1].End() == e.Off {
				out[n-1].Len += e.Len
			} else {
				out = append(out, e)
			}
		}
	}
	return out
}

// Truncate sets the guest size, as ftruncate does a file's: bytes past a smaller size are gone
// (their host clusters are left unreferenced, with refcount 0) and read as zeros if the guest
// grows again.
func (s *Qcow2Sink) Truncate(size int64) error {
	if size < 0 {
		return fmt.Errorf("qcow2: negative size %d", size)
	}
	if s.finished {
		return errors.New("qcow2: truncate after Finish")
	}
	if size < s.size {
		keep := ceilDiv(size, qcowCluster) // guest clusters that stay, the last maybe in part
		if in := size % qcowCluster; in != 0 {
			if h := s.host(size / qcowCluster); h != 0 {
				if _, err := s.f.WriteAt(make([]byte, qcowCluster-in), h*qcowCluster+in); err != nil {
					return fmt.Errorf("qcow2: truncating to %d: %w", size, err)
				}
			}
		}
		for k, m := range s.maps {
			for i, h := range m {
				if h != 0 && k*qcowL2Entries+int64(i) >= keep {
					s.orphans = append(s.orphans, int64(h))
					m[i] = 0
				}
			}
		}
	}
	s.size = size
	return nil
}

func (s *Qcow2Sink) Read(p []byte) (int, error) {
	n, err := s.ReadAt(p, s.pos)
	s.pos += int64(n)
	return n, err
}

func (s *Qcow2Sink) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.size
	}
	if off < 0 {
		return 0, fmt.Errorf("qcow2: seek to negative offset %d", off)
	}
	s.pos = off
	return off, nil
}

// Stat describes the guest as a regular file of its size.
func (s *Qcow2Sink) Stat() (fs.FileInfo, error) { return sinkInfo{s.f.Name(), s.size}, nil }

// Close does nothing: the image file belongs to the caller.
func (s *Qcow2Sink) Close() error { return nil }

type sinkInfo struct {
	name string
	size int64
}

func (i sinkInfo) Name() string       { return i.name }
func (i sinkInfo) Size() int64        { return i.size }
func (i sinkInfo) Mode() fs.FileMode  { return 0o644 }
func (i sinkInfo) ModTime() time.Time { return time.Time{} }
func (i sinkInfo) IsDir() bool        { return false }
func (i sinkInfo) Sys() any           { return nil }

// Finish writes the tables and the header and returns the image's length. The guest size must be
// a multiple of 512. Host clusters of guest clusters that a Truncate cut off are left unreferenced,
// with refcount 0. Nothing may be written after Finish; reads still work.
//
// Writes past the end grow the guest (as a file grows); so every mapped cluster lies inside it.
func (s *Qcow2Sink) Finish() (int64, error) {
	if s.finished {
		return 0, errors.New("qcow2: Finish called twice")
	}
	s.finished = true
	if s.size%512 != 0 {
		return 0, fmt.Errorf("qcow2: guest size %d is not a multiple of 512", s.size)
	}
	l1Size := ceilDiv(s.size, qcowL2Span)
	if l1Size > qcowMaxL1 {
		return 0, fmt.Errorf("qcow2: %d-byte guest needs %d L1 entries, qemu takes at most %d", s.size, l1Size, qcowMaxL1)
	}
	var ranges []int64 // L2 ranges with a cluster inside the guest
	for k, m := range s.maps {
		for _, h := range m {
			if h != 0 {
				ranges = append(ranges, k)
				break
			}
		}
	}
	slices.Sort(ranges)
	dropped := slices.Sorted(slices.Values(s.orphans))

	l2Start := s.next
	l1Start := l2Start + int64(len(ranges))
	l1Clusters := ceilDiv(l1Size*8, qcowCluster)
	rtStart := l1Start + l1Clusters
	var rt, rb int64 = 1, 1
	var total int64
	for {
		total = rtStart + rt + rb
		rb2 := ceilDiv(total, qcowRefsPerBlk)
		rt2 := ceilDiv(rb2, qcowRTPerClus)
		if rb2 == rb && rt2 == rt {
			break
		}
		rb, rt = rb2, rt2
	}
	rbStart := rtStart + rt

	bw := bufio.NewWriterSize(io.NewOffsetWriter(s.f, l2Start*qcowCluster), 1<<20)
	be := binary.BigEndian
	c := make([]byte, qcowCluster)
	put := func(what string, k int64) error {
		if _, err := bw.Write(c); err != nil {
			return fmt.Errorf("qcow2: writing %s cluster %d: %w", what, k, err)
		}
		return nil
	}
	// L2 tables (qcow2.rst "Standard Cluster Descriptor": bits 9-55 the host offset; bit 63
	// COPIED, as every refcount is 1).
	for j, k := range ranges {
		clear(c)
		for i, h := range s.maps[k] {
			if h != 0 {
				be.PutUint64(c[i*8:], uint64(h)*qcowCluster|qcowCopied)
			}
		}
		if err := put("L2 table", int64(j)); err != nil {
			return 0, err
		}
	}
	// L1 table, zero-padded to whole clusters.
	l1 := make([]uint64, l1Size)
	for j, k := range ranges {
		l1[k] = uint64(l2Start+int64(j))*qcowCluster | qcowCopied
	}
	for k := int64(0); k < l1Clusters; k++ {
		clear(c)
		for i := int64(0); i < qcowCluster/8 && k*qcowCluster/8+i < l1Size; i++ {
			be.PutUint64(c[i*8:], l1[k*qcowCluster/8+i])
		}
		if err := put("L1 table", k); err != nil {
			return 0, err
		}
	}
	// Refcount table: entry i is the offset of refcount block i.
	for k := int64(0); k < rt; k++ {
		clear(c)
		for i := int64(0); i < qcowRTPerClus && k*qcowRTPerClus+i < rb; i++ {
			be.PutUint64(c[i*8:], uint64(rbStart+k*qcowRTPerClus+i)*qcowCluster)
		}
		if err := put("refcount table", k); err != nil {
			return 0, err
		}
	}
	// Refcount blocks: 1 for every cluster of the image but the dropped ones (16-bit counts).
	for k := int64(0); k < rb; k++ {
		clear(c)
		for i := int64(0); i < qcowRefsPerBlk; i++ {
			h := k*qcowRefsPerBlk + i
			if h >= total {
				break
			}
			if _, drop := slices.BinarySearch(dropped, h); !drop {
				be.PutUint16(c[i*2:], 1)
			}
		}
		if err := put("refcount block", k); err != nil {
			return 0, err
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("qcow2: writing tables: %w", err)
	}
	hdr := make([]byte, qcowCluster)
	qcow2Header(hdr, s.size, l1Size, l1Start*qcowCluster, rtStart*qcowCluster, rt, compressNone)
	if _, err := s.f.WriteAt(hdr, 0); err != nil {
		return 0, fmt.Errorf("qcow2: writing the header: %w", err)
	}
	if err := s.f.Truncate(total * qcowCluster); err != nil {
		return 0, fmt.Errorf("qcow2: sizing the image to %d clusters: %w", total, err)
	}
	return total * qcowCluster, nil
}

// SinkWrites reports whether a build can write format f in place with a [Qcow2Sink]: an
// uncompressed qcow2.
func SinkWrites(f Format) bool {
	q, ok := f.(qcow2)
	return ok && q.compress == compressNone
}
