package diskfmt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// qcow2Image reads qcow2 version 2 and 3 images (qemu docs/interop/qcow2.rst): the active L1
// table only (snapshots are ignored), no backing file, no encryption, no external data file, no
// extended L2 entries.
type qcow2Image struct {
	baseImage
	clusterBits uint
	cluster     int64
	l2Entries   int64
	zstd        bool
	version     uint32
	l1          []uint64   // the L1 entries covering the virtual size
	host        *hostUnits // host clusters used by L2 tables and data, during open

	mu      sync.Mutex
	l2Cache []l2Slot // a few recently used L2 tables
	tick    uint64
	zclus   int64  // host descriptor of the cluster in zbuf, -1 for none
	zbuf    []byte // last decompressed cluster
	cbuf    []byte // compressed input
	inflate io.ReadCloser
	zdec    *zstd.Decoder
}

type l2Slot struct {
	off  int64 // host offset of the table, 0 = empty slot
	used uint64
	tab  []byte
}

// qcow2.rst "Cluster mapping": L1 and standard L2 entries hold the host offset in bits 9-55.
const (
	qcowOffMask      = uint64(0x00fffffffffffe00)
	qcowCompressed   = uint64(1) << 62
	qcowZeroFlag     = uint64(1)
	qcowL2CacheBytes = 4 << 20
)

// qcow2.rst "Header": incompatible_features bits.
const (
	qcowIncDirty      = 1 << 0
	qcowIncCorrupt    = 1 << 1
	qcowIncDataFile   = 1 << 2
	qcowIncCompType   = 1 << 3
	qcowIncExtendedL2 = 1 << 4
)

func openQcow2(r io.ReaderAt, fsize int64) (Image, error) {
	const F = "qcow2"
	img := &qcow2Image{baseImage: baseImage{r: r, fsize: fsize}, zclus: -1}
	var h [112]byte
	if err := img.readAt(F, "header", h[:72], 0); err != nil { // version 2 header: 72 bytes
		return nil, err
	}
	be := binary.BigEndian
	img.version = be.Uint32(h[4:]) // version
	if img.version != 2 && img.version != 3 {
		return nil, formatErr(F, "version", 4, "version %d is not supported (want 2 or 3)", img.version)
	}
	hdrLen := uint32(72)
	if img.version == 3 {
		if err := img.readAt(F, "header", h[72:104], 72); err != nil {
			return nil, err
		}
		hdrLen = be.Uint32(h[100:]) // header_length
		if hdrLen < 104 || hdrLen%8 != 0 {
			return nil, formatErr(F, "header_length", 100, "%d is below 104 or not a multiple of 8", hdrLen)
		}
		if hdrLen > 104 {
			if err := img.readAt(F, "header", h[104:105], 104); err != nil {
				return nil, err
			}
		}
	}
	if bo := be.Uint64(h[8:]); bo != 0 { // backing_file_offset
		return nil, formatErr(F, "backing_file_offset", 8, "the image has a backing file (name at offset %#x); backing files are not supported, flatten it first (qemu-img convert)", bo)
	}
	cb := be.Uint32(h[20:]) // cluster_bits
	if cb < 9 || cb > 21 {
		return nil, formatErr(F, "cluster_bits", 20, "%d is outside 9..21", cb)
	}
	img.clusterBits = uint(cb)
	img.cluster = 1 << cb
	img.l2Entries = img.cluster / 8
	size := be.Uint64(h[24:]) // size
	if size > 1<<56 {
		return nil, formatErr(F, "size", 24, "virtual size %d is larger than 2^56", size)
	}
	img.size = int64(size)
	if cm := be.Uint32(h[32:]); cm != 0 { // crypt_method
		return nil, formatErr(F, "crypt_method", 32, "encrypted images (method %d) are not supported", cm)
	}
	l1Size := int64(be.Uint32(h[36:])) // l1_size
	l1Off := int64(be.Uint64(h[40:]))  // l1_table_offset
	rtOff := int64(be.Uint64(h[48:]))  // refcount_table_offset
	rtClus := int64(be.Uint32(h[56:])) // refcount_table_clusters
	l2Span := img.cluster * img.l2Entries
	need := ceilDiv(img.size, l2Span)
	if l1Size < need {
		return nil, formatErr(F, "l1_size", 36, "%d entries cannot map virtual size %d (needs %d)", l1Size, img.size, need)
	}
	if l1Size > qcowMaxL1 {
		return nil, formatErr(F, "l1_size", 36, "%d entries is more than qemu's limit of %d", l1Size, qcowMaxL1)
	}
	if l1Off <= 0 && l1Size > 0 || l1Off%img.cluster != 0 {
		return nil, formatErr(F, "l1_table_offset", 40, "%#x is zero or not aligned to the %d-byte cluster", l1Off, img.cluster)
	}
	if l1Off < 0 || l1Off > fsize || l1Size*8 > fsize-l1Off {
		return nil, formatErr(F, "l1_table_offset", 40, "L1 table at %#x (%d entries) runs past the end of the file (%d bytes)", l1Off, l1Size, fsize)
	}
	if rtOff <= 0 || rtOff%img.cluster != 0 {
		return nil, formatErr(F, "refcount_table_offset", 48, "%#x is zero or not aligned to the %d-byte cluster", rtOff, img.cluster)
	}
	if rtOff > fsize || rtClus*img.cluster > fsize-rtOff {
		return nil, formatErr(F, "refcount_table_offset", 48, "refcount table at %#x (%d clusters) runs past the end of the file (%d bytes)", rtOff, rtClus, fsize)
	}
	if img.version == 3 {
		inc := be.Uint64(h[72:]) // incompatible_features
		switch {
		case inc&qcowIncDataFile != 0:
			return nil, formatErr(F, "incompatible_features", 72, "external data file (bit 2) is not supported")
		case inc&qcowIncExtendedL2 != 0:
			return nil, formatErr(F, "incompatible_features", 72, "extended L2 entries (bit 4) are not supported")
		case inc&^uint64(qcowIncDirty|qcowIncCorrupt|qcowIncCompType) != 0:
			return nil, formatErr(F, "incompatible_features", 72, "unknown bits %#x", inc&^uint64(0x1f))
		}
		ct := byte(0)
		if hdrLen > 104 {
			ct = h[104] // compression_type
		}
		switch {
		case ct > 1:
			return nil, formatErr(F, "compression_type", 104, "%d is unknown (0 deflate, 1 zstd)", ct)
		case ct == 1 && inc&qcowIncCompType == 0:
			return nil, formatErr(F, "compression_type", 104, "zstd without incompatible feature bit 3")
		case ct == 0 && inc&qcowIncCompType != 0:
			return nil, formatErr(F, "incompatible_features", 72, "compression type bit 3 set but compression_type is deflate")
		}
		img.zstd = ct == 1
	}

	if err := img.readL1(l1Off, need); err != nil {
		return nil, err
	}
	nslots := min(max(2, qcowL2CacheBytes/img.cluster), 16) // a small cache: 16 tables, at most 4 MiB
	img.l2Cache = make([]l2Slot, nslots)
	if err := img.mapExtents(); err != nil {
		return nil, err
	}
	return img, nil
}

// readL1 reads the need L1 entries at l1Off that cover the virtual size (qcow2.rst "Cluster
// mapping") and checks each L2 table lies inside the file and is used once. It claims the L2
// tables' clusters in img.host.
func (img *qcow2Image) readL1(l1Off, need int64) error {
	const F = "qcow2"
	if need*8 > maxTableBytes {
		return formatErr(F, "l1_size", 36, "L1 table of %d entries is too large", need)
	}
	raw := make([]byte, need*8)
	if err := img.readAt(F, "L1 table", raw, l1Off); err != nil {
		return err
	}
	img.l1 = make([]uint64, need)
	img.host = newHostUnits(img.fsize, img.clusterBits)
	for i := range img.l1 {
		e := binary.BigEndian.Uint64(raw[i*8:])
		at := l1Off + int64(i)*8
		off := int64(e & qcowOffMask)
		if off == 0 {
			continue
		}
		if off%img.cluster != 0 {
			return formatErr(F, "L1 entry", at, "L2 table offset %#x is not aligned to the %d-byte cluster", off, img.cluster)
		}
		if off > img.fsize-img.cluster {
			return formatErr(F, "L1 entry", at, "L2 table offset %#x is past the end of the file (%d bytes)", off, img.fsize)
		}
		if !img.host.claim(off) {
			return formatErr(F, "L1 entry", at, "L2 table offset %#x is also used by another L1 entry", off)
		}
		img.l1[i] = e
	}
	return nil
}

func (i *qcow2Image) Format() string { return "qcow2" }

// compressedSpan decodes a compressed cluster descriptor (qcow2.rst "Compressed Clusters
// Descriptor", x = 62 - (cluster_bits - 8)): the host byte offset in bits 0..x-1, the number of
// additional 512-byte sectors in bits x..61. It returns the offset and the byte length.
func (i *qcow2Image) compressedSpan(e uint64) (int64, int64) {
	x := 62 - (i.clusterBits - 8)
	off := int64(e & (1<<x - 1))
	sectors := int64((e&^qcowCompressed&^(uint64(1)<<63))>>x) + 1
	return off, sectors*512 - off%512
}

// checkL2 validates one L2 entry found at file offset at; it returns whether it maps data.
func (i *qcow2Image) checkL2(e uint64, at int64) (bool, error) {
	const F = "qcow2"
	if e&qcowCompressed != 0 {
		if e&qcowCopied != 0 {
			return false, formatErr(F, "L2 entry", at, "compressed cluster descriptor %#x has the COPIED bit 63 set", e)
		}
		off, n := i.compressedSpan(e)
		if off >= i.fsize {
			return false, formatErr(F, "L2 entry", at, "compressed cluster offset %#x is past the end of the file (%d bytes)", off, i.fsize)
		}
		if n > 2*i.cluster+512 {
			return false, formatErr(F, "L2 entry", at, "compressed cluster is %d bytes, more than twice the %d-byte cluster", n, i.cluster)
		}
		return true, nil
	}
	if e&qcowZeroFlag != 0 && i.version == 3 { // qcow2.rst "Standard Cluster Descriptor": bit 0 all zeros
		return false, nil
	}
	off := int64(e & qcowOffMask)
	if off == 0 {
		return false, nil // unallocated: zeros, as there is no backing file
	}
	if off%i.cluster != 0 {
		return false, formatErr(F, "L2 entry", at, "host cluster offset %#x is not aligned to the %d-byte cluster", off, i.cluster)
	}
	if off > i.fsize-i.cluster {
		return false, formatErr(F, "L2 entry", at, "host cluster offset %#x is past the end of the file (%d bytes)", off, i.fsize)
	}
	return true, nil
}

// mapExtents walks every L2 table, validating each entry, and builds the extents. The guest
// data mapped is bounded by the file (doc.go "# Limits"): no two L2 entries (or an L2 entry and
// an L2 table) may use the same host cluster, and compressed clusters may give at most
// maxInflateRatio times the file size. The walk reads each L2 table once; as they are distinct
// clusters of the file, it reads at most the file.
func (i *qcow2Image) mapExtents() error {
	var exts []Extent
	var runs runCollector
	zbudget := inflateBudget(i.fsize)
	tab := make([]byte, i.cluster)
	for k, l1e := range i.l1 {
		l2Off := int64(l1e & qcowOffMask)
		if l2Off == 0 {
			continue
		}
		if err := i.readAt("qcow2", "L2 table", tab, l2Off); err != nil {
			return err
		}
		base := int64(k) * i.l2Entries * i.cluster
		for j := int64(0); j < i.l2Entries; j++ {
			g := base + j*i.cluster
			if g >= i.size {
				break
			}
			e := binary.BigEndian.Uint64(tab[j*8:])
			data, err := i.claimL2(e, l2Off+j*8, &zbudget)
			if err != nil {
				return err
			}
			if data {
				runs.add(g, i.cluster)
			}
		}
		exts = runs.flush(exts)
	}
	i.exts = clipExtents(exts, i.size)
	i.host = nil
	return nil
}

// claimL2 checks one L2 entry found at file offset at (checkL2) and charges what it maps: its
// host cluster, which no other entry may use, or the guest cluster a compressed one gives, from
// zbudget. It returns whether the entry maps data.
func (i *qcow2Image) claimL2(e uint64, at int64, zbudget *budget) (bool, error) {
	const F = "qcow2"
	data, err := i.checkL2(e, at)
	if err != nil || !data {
		return data, err
	}
	if e&qcowCompressed != 0 {
		if !zbudget.take(i.cluster) {
			return false, formatErr(F, "L2 entry", at, "compressed clusters map more than %d times the %d-byte file (%d bytes), more than deflate can give: entries repeat or share compressed data", maxInflateRatio, i.fsize, inflateBudget(i.fsize).left)
		}
		return true, nil
	}
	if off := int64(e & qcowOffMask); !i.host.claim(off) {
		return false, formatErr(F, "L2 entry", at, "host cluster %#x is already used by another L2 entry or an L2 table (each host cluster may be mapped once)", off)
	}
	return true, nil
}

// l2Table returns the L2 table at host offset off, from the cache or the file. Call with mu held.
func (i *qcow2Image) l2Table(off int64) ([]byte, error) {
	i.tick++
	victim := 0
	for k := range i.l2Cache {
		s := &i.l2Cache[k]
		if s.off == off {
			s.used = i.tick
			return s.tab, nil
		}
		if s.used < i.l2Cache[victim].used {
			victim = k
		}
	}
	s := &i.l2Cache[victim]
	if s.tab == nil {
		s.tab = make([]byte, i.cluster)
	}
	s.off = 0
	if err := i.readAt("qcow2", "L2 table", s.tab, off); err != nil {
		return nil, err
	}
	s.off, s.used = off, i.tick
	return s.tab, nil
}

// lookup returns the L2 entry for guest cluster c and its file offset. Call with mu held.
func (i *qcow2Image) lookup(c int64) (uint64, int64, error) {
	l1e := i.l1[c/i.l2Entries]
	l2Off := int64(l1e & qcowOffMask)
	if l2Off == 0 {
		return 0, 0, nil
	}
	tab, err := i.l2Table(l2Off)
	if err != nil {
		return 0, 0, err
	}
	j := c % i.l2Entries
	return binary.BigEndian.Uint64(tab[j*8:]), l2Off + j*8, nil
}

// ReadAt reads guest bytes. It is safe for concurrent use (the metadata cache is locked).
func (i *qcow2Image) ReadAt(p []byte, off int64) (int, error) {
	p, eof := guestRead(p, off, i.size)
	if eof != nil && len(p) == 0 {
		return 0, eof
	}
	done := 0
	for done < len(p) {
		g := off + int64(done)
		c := g >> i.clusterBits
		in := g & (i.cluster - 1)
		n := int(min(int64(len(p)-done), i.cluster-in))
		if err := i.readCluster(p[done:done+n], c, in); err != nil {
			return done, err
		}
		done += n
	}
	return done, eof
}

// readCluster fills p from guest cluster c, starting in at byte in of the cluster.
func (i *qcow2Image) readCluster(p []byte, c, in int64) error {
	i.mu.Lock()
	e, at, err := i.lookup(c)
	if err != nil {
		i.mu.Unlock()
		return err
	}
	if e&qcowCompressed != 0 {
		defer i.mu.Unlock()
		if err := i.decompress(e, at); err != nil {
			return err
		}
		copy(p, i.zbuf[in:])
		return nil
	}
	i.mu.Unlock()
	if at != 0 { // validated at open, but the file may be read through an untrusted ReaderAt
		if _, err := i.checkL2(e, at); err != nil {
			return err
		}
	}
	host := int64(e & qcowOffMask)
	if host == 0 || e&qcowZeroFlag != 0 && i.version == 3 {
		clear(p)
		return nil
	}
	return i.readAt("qcow2", "data cluster", p, host+in)
}

// decompress fills zbuf with the compressed cluster e (L2 entry at file offset at). Call with mu
// held.
func (i *qcow2Image) decompress(e uint64, at int64) error {
	const F = "qcow2"
	if _, err := i.checkL2(e, at); err != nil {
		return err
	}
	if int64(e) == i.zclus {
		return nil
	}
	off, n := i.compressedSpan(e)
	n = min(n, i.fsize-off) // the last sector may extend past the end of the file
	if i.zbuf == nil {
		i.zbuf = make([]byte, i.cluster)
		i.cbuf = make([]byte, 2*i.cluster+512)
	}
	i.zclus = -1
	in := i.cbuf[:n]
	if err := i.readAt(F, "compressed cluster", in, off); err != nil {
		return err
	}
	var err error
	var got int
	if i.zstd { // qcow2.rst "compression_type": 1 = zstd, one frame per cluster
		if i.zdec == nil {
			i.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(uint64(8<<20)))
			if err != nil {
				return fmt.Errorf("qcow2: zstd decoder: %w", err)
			}
		}
		if err = i.zdec.Reset(bytes.NewReader(in)); err == nil {
			got, err = io.ReadFull(i.zdec, i.zbuf)
		}
	} else { // 0 = deflate, raw RFC 1951 without zlib header
		if i.inflate == nil {
			i.inflate = flate.NewReader(bytes.NewReader(in))
		} else if err = i.inflate.(flate.Resetter).Reset(bytes.NewReader(in), nil); err != nil {
			return fmt.Errorf("qcow2: inflate reset: %w", err)
		}
		got, err = io.ReadFull(i.inflate, i.zbuf)
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return formatErr(F, "compressed cluster", off, "%d bytes decompress to %d bytes, want the %d-byte cluster (L2 entry at %#x)", n, got, i.cluster, at)
		}
		return formatErr(F, "compressed cluster", off, "%d bytes do not decompress (L2 entry at %#x): %v", n, at, err)
	}
	i.zclus = int64(e)
	return nil
}

func (i *qcow2Image) Close() error {
	i.mu.Lock()
	if i.zdec != nil {
		i.zdec.Close()
		i.zdec = nil
	}
	i.mu.Unlock()
	return i.baseImage.Close()
}
