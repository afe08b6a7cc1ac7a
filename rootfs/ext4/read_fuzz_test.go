package ext4

import (
	"bytes"
	"encoding/binary"
	"sort"
	"sync"
	"testing"
)

// patched is a base image with a few bytes overwritten, read without copying the base.
type patched struct {
	base []byte
	offs []int64 // sorted
	vals []byte
}

func (p *patched) ReadAt(b []byte, off int64) (int, error) {
	n, err := bytes.NewReader(p.base).ReadAt(b, off)
	i := sort.Search(len(p.offs), func(i int) bool { return p.offs[i] >= off })
	for ; i < len(p.offs) && p.offs[i] < off+int64(n); i++ {
		b[p.offs[i]-off] = p.vals[i]
	}
	return n, err
}

var fuzzBase struct {
	once   sync.Once
	img    []byte
	blocks []int64 // the image's non-zero 4 KiB blocks: where the metadata and small files are
}

// FuzzRead overwrites bytes of a small writer-made image and requires that Open and a full walk
// (every file read, every link followed) either succeed or fail with an error, never panic or hang.
// Each 4-byte record of the input picks a non-zero block of the base image (byte 0), an offset in it
// (bytes 1-2) and a value (byte 3). A last record of 0xFF 0xFF 0xFF x truncates the image by x KiB.
func FuzzRead(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0x04, 0x38, 0x00})                                            // superblock magic
	f.Add([]byte{0, 0x04, 0x18, 0x07})                                            // block size
	f.Add([]byte{1, 0x00, 0x08, 0xFF, 1, 0x00, 0x09, 0xFF})                       // group 0 inode table
	f.Add([]byte{3, 0x01, 0x2E, 0x05, 3, 0x01, 0x30, 0x01})                       // an inode's extent header
	f.Add([]byte{2, 0x00, 0x04, 0x00, 2, 0x00, 0x18, 0x30})                       // directory entries
	f.Add([]byte{5, 0x01, 0x06, 0x03, 5, 0x02, 0x06, 0x03, 0xFF, 0xFF, 0xFF, 40}) // depth, truncation
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBase.once.Do(func() {
			img := smallImage(t)
			var blocks []int64
			for b := int64(0); b*4096 < int64(len(img)); b++ {
				for _, c := range img[b*4096 : (b+1)*4096] {
					if c != 0 {
						blocks = append(blocks, b)
						break
					}
				}
			}
			fuzzBase.img, fuzzBase.blocks = img, blocks
		})
		base, blocks := fuzzBase.img, fuzzBase.blocks
		size := int64(len(base))
		type pv struct {
			off int64
			v   byte
		}
		var ps []pv
		for i := 0; i+4 <= len(data) && i < 4*256; i += 4 {
			if data[i] == 0xFF && data[i+1] == 0xFF && data[i+2] == 0xFF {
				size = max(0, size-int64(data[i+3])<<10)
				continue
			}
			blk := blocks[int(data[i])%len(blocks)]
			ps = append(ps, pv{blk*4096 + int64(binary.BigEndian.Uint16(data[i+1:])%4096), data[i+3]})
		}
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].off < ps[j].off })
		p := &patched{base: base[:size]}
		for _, x := range ps {
			if n := len(p.offs); n > 0 && p.offs[n-1] == x.off {
				p.vals[n-1] = x.v
				continue
			}
			p.offs, p.vals = append(p.offs, x.off), append(p.vals, x.v)
		}
		if _, err := Probe(p, size); err != nil {
			return
		}
		fsys, err := Open(p, size)
		if err != nil {
			return
		}
		_ = walkAll(fsys)
	})
}
