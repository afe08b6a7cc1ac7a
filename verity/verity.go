// Package verity computes a dm-verity hash tree over a data region and writes it in the on-disk
// format `veritysetup format` writes (cryptsetup's lib/verity; the kernel's
// Documentation/admin-guide/device-mapper/verity.rst): a 512-byte superblock in the first hash
// block, then the tree, its top level first; SHA-256, hash type 1 (each block hashed as
// sha256(salt || block)), digests packed 128 to a 4 KiB hash block, the rest of a block zero. The
// root hash is the digest of the single top-level block. With the same data, salt, UUID and block
// sizes the bytes are those of `veritysetup format --salt=… --uuid=…` (tested).
//
// The data is read once, in order, and hashed on every core (blocks are independent); each hash
// block is written as soon as it is full, so memory is a few MiB of read buffers plus one hash
// block per level.
//
// Limits: SHA-256 and hash type 1 only; block sizes are powers of two from 512 to 4096 bytes; the
// data size must be a whole number of data blocks; the salt is at most 256 bytes.
package verity

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// Params are the parameters of a hash tree; zero block sizes mean 4096.
type Params struct {
	Salt          []byte   // at most 256 bytes; derive it from the build seed for reproducible bytes
	UUID          [16]byte // the superblock's UUID, bytes in UUID-string order
	DataBlockSize int
	HashBlockSize int
}

const (
	digestSize = sha256.Size
	sbSize     = 512
	maxSalt    = 256
)

func (p Params) sizes() (dbs, hbs int64, err error) {
	dbs, hbs = int64(p.DataBlockSize), int64(p.HashBlockSize)
	if dbs == 0 {
		dbs = 4096
	}
	if hbs == 0 {
		hbs = 4096
	}
	for _, s := range []int64{dbs, hbs} {
		if s < 512 || s > 4096 || s&(s-1) != 0 {
			return 0, 0, fmt.Errorf("verity: block size %d: want a power of two from 512 to 4096", s)
		}
	}
	if len(p.Salt) > maxSalt {
		return 0, 0, fmt.Errorf("verity: salt of %d bytes, at most %d", len(p.Salt), maxSalt)
	}
	return dbs, hbs, nil
}

// levels returns the number of hash blocks of each level, level 0 (hashes of data blocks) first.
// One data block has no levels: its digest is the root hash (as veritysetup does it).
func levels(dataBlocks, perBlock int64) []int64 {
	if dataBlocks <= 1 {
		return nil
	}
	n := []int64{ceilDiv(dataBlocks, perBlock)}
	for n[len(n)-1] > 1 {
		n = append(n, ceilDiv(n[len(n)-1], perBlock))
	}
	return n
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// HashSize is the size of the hash area (superblock block included) for dataSize bytes of data.
func HashSize(dataSize int64, p Params) (int64, error) {
	dbs, hbs, err := p.sizes()
	if err != nil {
		return 0, err
	}
	if dataSize <= 0 || dataSize%dbs != 0 {
		return 0, fmt.Errorf("verity: data size %d is not a positive multiple of the %d-byte block", dataSize, dbs)
	}
	total := int64(1) // the superblock's block
	for _, n := range levels(dataSize/dbs, hbs/digestSize) {
		total += n
	}
	return total * hbs, nil
}

// Tree is what Write made.
type Tree struct {
	RootHash   [32]byte
	DataBlocks int64
	HashSize   int64 // bytes written to the hash area, superblock included
}

// Write hashes the dataSize bytes of data and writes the superblock and the hash tree to hash,
// from offset 0. Every block of the hash area is written (zeros included).
func Write(ctx context.Context, data io.ReaderAt, dataSize int64, hash io.WriterAt, p Params) (Tree, error) {
	hashSize, err := HashSize(dataSize, p)
	if err != nil {
		return Tree{}, err
	}
	dbs, hbs, _ := p.sizes()
	dataBlocks := dataSize / dbs
	per := hbs / digestSize
	ns := levels(dataBlocks, per)
	pos := make([]int64, len(ns)) // byte offset of each level in the hash area: top level first
	at := hbs
	for i := len(ns) - 1; i >= 0; i-- {
		pos[i] = at
		at += ns[i] * hbs
	}
	t := &tree{p: p, hbs: hbs, per: per, pos: pos, hash: hash,
		cur: make([][]byte, len(ns)), fill: make([]int64, len(ns)), idx: make([]int64, len(ns))}
	for i := range t.cur {
		t.cur[i] = make([]byte, hbs)
	}
	put := t.add0
	if len(ns) == 0 {
		put = func(d [32]byte) error { t.root, t.done = d, true; return nil }
	}
	if err := hashData(ctx, data, dataBlocks, dbs, p.Salt, put); err != nil {
		return Tree{}, err
	}
	for i := range ns { // the last, partly filled block of each level, bottom up
		if t.fill[i] > 0 {
			if err := t.flush(i); err != nil {
				return Tree{}, err
			}
		}
	}
	if !t.done {
		return Tree{}, errors.New("verity: internal error: no root hash")
	}
	sb := make([]byte, hbs)
	superblock(sb, p, dbs, hbs, dataBlocks)
	if _, err := hash.WriteAt(sb, 0); err != nil {
		return Tree{}, fmt.Errorf("verity: writing the superblock: %w", err)
	}
	return Tree{RootHash: t.root, DataBlocks: dataBlocks, HashSize: hashSize}, nil
}

// tree is the hash tree being built: the hash block being filled at each level.
type tree struct {
	p    Params
	hbs  int64
	per  int64
	pos  []int64
	hash io.WriterAt
	cur  [][]byte
	fill []int64 // digests in cur[i]
	idx  []int64 // blocks of level i written
	root [32]byte
	done bool
}

func (t *tree) add0(d [32]byte) error { return t.add(0, d) }

func (t *tree) add(level int, d [32]byte) error {
	copy(t.cur[level][t.fill[level]*digestSize:], d[:])
	t.fill[level]++
	if t.fill[level] == t.per {
		return t.flush(level)
	}
	return nil
}

// flush writes level's current block and hands its digest to the level above (or makes it the
// root).
func (t *tree) flush(level int) error {
	b := t.cur[level]
	clear(b[t.fill[level]*digestSize:])
	off := t.pos[level] + t.idx[level]*t.hbs
	if _, err := t.hash.WriteAt(b, off); err != nil {
		return fmt.Errorf("verity: writing hash block %d of level %d at %d: %w", t.idx[level], level, off, err)
	}
	d := blockDigest(t.p.Salt, b)
	t.idx[level]++
	t.fill[level] = 0
	if level == len(t.cur)-1 {
		t.root, t.done = d, true
		return nil
	}
	return t.add(level+1, d)
}

func blockDigest(salt, block []byte) [32]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(block)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// hashData reads the data blocks in order and calls put with each block's digest, in order; the
// hashing runs on GOMAXPROCS goroutines, a chunk of blocks each.
func hashData(ctx context.Context, data io.ReaderAt, blocks, bs int64, salt []byte, put func([32]byte) error) error {
	const chunk = 1 << 20
	perChunk := max(1, chunk/bs)
	type job struct {
		first int64
		buf   []byte
		sums  [][32]byte
		err   error
		done  chan struct{}
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *job, workers)
	order := make(chan *job, workers*2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				n := int64(len(j.buf)) / bs
				if k, err := data.ReadAt(j.buf, j.first*bs); k < len(j.buf) {
					j.err = fmt.Errorf("verity: reading data blocks %d-%d: %d of %d bytes: %w", j.first, j.first+n-1, k, len(j.buf), err)
				} else {
					for k := range n {
						j.sums[k] = blockDigest(salt, j.buf[k*bs:(k+1)*bs])
					}
				}
				close(j.done)
			}
		})
	}
	go func() { // hand out jobs in order
		defer close(jobs)
		defer close(order)
		for first := int64(0); first < blocks; first += perChunk {
			n := min(perChunk, blocks-first)
			j := &job{first: first, buf: make([]byte, n*bs), sums: make([][32]byte, n), done: make(chan struct{})}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	var err error
	for j := range order {
		<-j.done
		if err == nil {
			err = j.err
		}
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			for _, s := range j.sums {
				if err = put(s); err != nil {
					break
				}
			}
		}
		if err != nil {
			cancel()
		}
	}
	wg.Wait()
	return err
}

// superblock fills b with the verity superblock (cryptsetup lib/verity/verity.c, struct
// verity_sb; little-endian): signature "verity\0\0", version 1, hash type 1, UUID, algorithm name,
// block sizes, data blocks, salt size and salt.
func superblock(b []byte, p Params, dbs, hbs, dataBlocks int64) {
	le := binary.LittleEndian
	copy(b[0:8], "verity\x00\x00")
	le.PutUint32(b[8:], 1)  // version
	le.PutUint32(b[12:], 1) // hash_type: 1, normal (0 is Chrome OS)
	copy(b[16:32], p.UUID[:])
	copy(b[32:64], "sha256")
	le.PutUint32(b[64:], uint32(dbs))
	le.PutUint32(b[68:], uint32(hbs))
	le.PutUint64(b[72:], uint64(dataBlocks))
	le.PutUint16(b[80:], uint16(len(p.Salt)))
	copy(b[88:88+maxSalt], p.Salt)
}
