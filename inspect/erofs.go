package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"

	goerofs "github.com/erofs/go-erofs"
)

// EROFS root filesystems (rootfs/erofs writes them; the kernel's fs/erofs/erofs_fs.h describes
// them) are identified and checked here, from the superblock at byte 1024, and read through
// github.com/erofs/go-erofs. go-erofs is a third-party reader that was not written for this
// package's rules, so it is fenced in:
//
//   - the superblock is checked first (magic, block size, crc32c when the image says it has one,
//     a size that fits the partition), so go-erofs only sees images that pass those checks;
//   - every read it makes goes through budgetReader, which refuses reads outside the partition and
//     bounds the bytes read in all (a directory tree whose entries share blocks or loop back, or
//     a symlink chain that restarts from the root 255 times, costs at most the budget), with a
//     1 MiB cache of the blocks read last (go-erofs has none);
//   - directories over maxEROFSDir bytes are not listed (go-erofs lists a directory whole into
//     memory), and ReadFile reads at most the partition's size (go-erofs would allocate a file's
//     claimed size, up to 128 MiB, before reading it);
//   - every call into it recovers from a panic and returns it as an error: go-erofs decodes
//     on-disk structures with slice expressions whose bounds come from the image, and a panic in a
//     reader of untrusted input must not take the caller down.

const (
	erofsMagic    = 0xE0F5E1E2
	erofsSBOffset = 1024
	// maxEROFSDir is the largest directory listed (the ext4 reader's bound too).
	maxEROFSDir = 32 << 20
	// erofsInspectBudget bounds what Inspect reads through go-erofs (os-release and the kernel's
	// directories: a few blocks on a real image).
	erofsInspectBudget = 64 << 20
)

// erofsSuper is what probeEROFS reads from an EROFS superblock.
type erofsSuper struct {
	blockBits uint8
	blocks    uint32
	uuid      [16]byte
	label     string
	csum      bool // EROFS_FEATURE_COMPAT_SB_CHKSUM: the checksum field is set
	csumOK    bool
}

// size is the filesystem's size in bytes (blocks_lo × block size).
func (s erofsSuper) size() int64 { return int64(s.blocks) << s.blockBits }

func (s erofsSuper) uuidString() string {
	u := s.uuid
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// parseEROFS reads an EROFS superblock from head, the first bytes of a partition (at least the
// first block when the checksum is to be checked: 64 KiB at most). ok is false when the magic or
// the block size is wrong.
func parseEROFS(head []byte) (s erofsSuper, ok bool) {
	if len(head) < erofsSBOffset+128 || le.Uint32(head[erofsSBOffset:]) != erofsMagic {
		return s, false
	}
	sb := head[erofsSBOffset:]
	s.blockBits = sb[12]
	if s.blockBits < 9 || s.blockBits > 16 { // 512 B to 64 KiB: what the kernel and go-erofs accept
		return s, false
	}
	s.blocks = le.Uint32(sb[36:])
	copy(s.uuid[:], sb[48:64])
	s.label = string(bytes.TrimRight(sb[64:80], "\x00"))
	if le.Uint32(sb[8:])&1 != 0 { // feature_compat bit 0: sb_chksum
		s.csum = true
		// The kernel's erofs_superblock_csum_verify: crc32c(~0, …) over the block from byte 1024
		// (the whole block when it is no larger than 1024 bytes), its checksum field zeroed, with
		// no final inversion (Go's Checksum inverts).
		n := 1 << s.blockBits
		if n > erofsSBOffset {
			n -= erofsSBOffset
		}
		if len(sb) >= n {
			blk := bytes.Clone(sb[:n])
			want := le.Uint32(blk[4:])
			clear(blk[4:8])
			s.csumOK = ^crc32.Checksum(blk, crc32.MakeTable(crc32.Castagnoli)) == want
		}
	}
	return s, true
}

// readEROFS reads and checks the superblock of the EROFS filesystem in r[0:size).
func readEROFS(r io.ReaderAt, size int64) (erofsSuper, error) {
	head := make([]byte, min(size, erofsSBOffset+1<<16))
	if n, err := r.ReadAt(head, 0); n < len(head) {
		return erofsSuper{}, fmt.Errorf("erofs: reading the superblock: %w", err)
	}
	s, ok := parseEROFS(head)
	if !ok {
		return s, errors.New("erofs: no valid superblock at byte 1024 (magic or block size)")
	}
	if s.csum && !s.csumOK {
		return s, errors.New("erofs: superblock checksum mismatch")
	}
	if s.size() > size {
		return s, fmt.Errorf("erofs: the superblock says %d blocks of %d bytes (%d bytes), more than the %d-byte partition", s.blocks, 1<<s.blockBits, s.size(), size)
	}
	return s, nil
}

// openEROFS checks the EROFS superblock in r[0:size) and opens the filesystem with go-erofs. It
// reads at most budget bytes in all (plus the superblock's block).
func openEROFS(r io.ReaderAt, size, budget int64) (fs.FS, error) {
	if _, err := readEROFS(r, size); err != nil {
		return nil, err
	}
	br := newBudgetReader(r, size, budget)
	var fsys fs.FS
	err := guard("open", ".", func() error {
		var err error
		fsys, err = goerofs.Open(br)
		if err != nil {
			return err
		}
		// Read the root directory's inode now, so that a filesystem that cannot be walked at all
		// is an error here, as ext4.Open's is.
		fi, err := fs.Stat(fsys, ".")
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return errors.New("the root inode is not a directory")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("erofs: %w", err)
	}
	return &erofsFS{fsys: fsys, size: size}, nil
}

// errEROFSBudget is the error of a read past the budget of an EROFS reader.
var errEROFSBudget = errors.New("the EROFS reader's budget is spent")

const (
	cacheBlock  = 4096 // budgetReader's cache granularity
	cacheBlocks = 256  // blocks kept (1 MiB)
)

// budgetReader is the partition as go-erofs reads it: reads must lie inside it, and every read
// takes its length from a budget shared by everything read through the filesystem, so the budget
// bounds go-erofs's work (a directory cycle walked again and again ends when it is spent).
// go-erofs keeps no cache and reads a whole block for every inode and directory block it looks at
// (every path lookup starts at the root), so budgetReader keeps the last cacheBlocks 4 KiB blocks
// it read: the reads it serves from them are charged all the same (the budget bounds work, not
// I/O), but cost no I/O.
type budgetReader struct {
	r    io.ReaderAt
	size int64

	mu    sync.Mutex
	left  int64
	cache map[int64][]byte // by block number
	ring  []int64          // the cached block numbers, oldest first once full
	next  int              // the ring slot to evict next
}

func newBudgetReader(r io.ReaderAt, size, budget int64) *budgetReader {
	return &budgetReader{r: r, size: size, left: budget, cache: make(map[int64][]byte)}
}

func (b *budgetReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= b.size {
		return 0, fmt.Errorf("erofs: read at byte %d, outside the %d-byte partition: %w", off, b.size, io.EOF)
	}
	var short error
	if int64(len(p)) > b.size-off {
		p, short = p[:b.size-off], io.EOF
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left < int64(len(p)) {
		return 0, errEROFSBudget
	}
	b.left -= int64(len(p))
	n := 0
	for n < len(p) {
		at := off + int64(n)
		blk, err := b.block(at / cacheBlock)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], blk[at%cacheBlock:])
	}
	return n, short
}

// block returns block i of the partition (shorter at its end), from the cache or read.
func (b *budgetReader) block(i int64) ([]byte, error) {
	if blk, ok := b.cache[i]; ok {
		return blk, nil
	}
	n := min(cacheBlock, b.size-i*cacheBlock)
	var blk []byte
	if len(b.ring) < cacheBlocks {
		blk = make([]byte, n)
		b.ring = append(b.ring, i)
	} else {
		old := b.ring[b.next]
		blk = b.cache[old][:cap(b.cache[old])][:n]
		delete(b.cache, old)
		b.ring[b.next] = i
		b.next = (b.next + 1) % cacheBlocks
	}
	if k, err := b.r.ReadAt(blk, i*cacheBlock); k < len(blk) {
		delete(b.cache, i)
		b.ring = slices.DeleteFunc(b.ring, func(x int64) bool { return x == i })
		if b.next >= len(b.ring) {
			b.next = 0
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("erofs: reading the partition at byte %d: %w", i*cacheBlock, err)
	}
	b.cache[i] = blk
	return blk, nil
}

// guard runs f and turns a panic in it into an error: f calls into go-erofs (see above).
func guard(op, name string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("malformed filesystem (the erofs reader panicked: %v)", v)}
		}
	}()
	return f()
}

// erofsFS is the fs.FS handed out for an EROFS filesystem: go-erofs's, with paths checked, panics
// recovered, directory listings and ReadFile bounded.
type erofsFS struct {
	fsys fs.FS
	size int64 // the partition's bytes
}

var (
	_ fs.FS         = (*erofsFS)(nil)
	_ fs.StatFS     = (*erofsFS)(nil)
	_ fs.ReadDirFS  = (*erofsFS)(nil)
	_ fs.ReadFileFS = (*erofsFS)(nil)
	_ fs.ReadLinkFS = (*erofsFS)(nil)
)

func checkPath(op, name string) error {
	if !fs.ValidPath(name) {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return nil
}

func (e *erofsFS) Open(name string) (fs.File, error) {
	if err := checkPath("open", name); err != nil {
		return nil, err
	}
	var f fs.File
	err := guard("open", name, func() (err error) { f, err = e.fsys.Open(name); return err })
	if err != nil {
		return nil, err
	}
	ef := &erofsFile{f: f, name: name}
	if _, ok := f.(fs.ReadDirFile); ok {
		return &erofsDir{ef}, nil
	}
	return ef, nil
}

func (e *erofsFS) Stat(name string) (fi fs.FileInfo, err error) {
	if err := checkPath("stat", name); err != nil {
		return nil, err
	}
	err = guard("stat", name, func() (err error) { fi, err = fs.Stat(e.fsys, name); return err })
	return fi, err
}

func (e *erofsFS) Lstat(name string) (fi fs.FileInfo, err error) {
	if err := checkPath("lstat", name); err != nil {
		return nil, err
	}
	err = guard("lstat", name, func() (err error) { fi, err = fs.Lstat(e.fsys, name); return err })
	return fi, err
}

func (e *erofsFS) ReadLink(name string) (t string, err error) {
	if err := checkPath("readlink", name); err != nil {
		return "", err
	}
	err = guard("readlink", name, func() (err error) { t, err = fs.ReadLink(e.fsys, name); return err })
	return t, err
}

func (e *erofsFS) ReadDir(name string) ([]fs.DirEntry, error) {
	f, err := e.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, ok := f.(*erofsDir)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	es, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	// go-erofs lists in on-disk order, which a well-formed image sorts by name; fs.ReadDir's
	// contract is sorted, whatever the image says.
	slices.SortFunc(es, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return es, nil
}

// ReadFile reads a file whole, growing the buffer as the bytes arrive: never more than the
// partition holds (an uncompressed EROFS stores every byte of a file).
func (e *erofsFS) ReadFile(name string) ([]byte, error) {
	f, err := e.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, e.size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > e.size {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("more bytes than the %d-byte partition holds", e.size)}
	}
	return b, nil
}

// erofsFile is an open file of erofsFS.
type erofsFile struct {
	f    fs.File
	name string
}

func (f *erofsFile) Stat() (fi fs.FileInfo, err error) {
	err = guard("stat", f.name, func() (err error) { fi, err = f.f.Stat(); return err })
	return fi, err
}

func (f *erofsFile) Read(p []byte) (n int, err error) {
	err = guard("read", f.name, func() (err error) { n, err = f.f.Read(p); return err })
	return n, err
}

func (f *erofsFile) Close() error {
	return guard("close", f.name, f.f.Close)
}

// erofsDir is an open directory of erofsFS; it lists at most maxEROFSDir bytes of entries.
type erofsDir struct{ *erofsFile }

func (d *erofsDir) ReadDir(n int) (es []fs.DirEntry, err error) {
	fi, err := d.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxEROFSDir {
		return nil, &fs.PathError{Op: "readdir", Path: d.name, Err: fmt.Errorf("directory of %d bytes, more than the %d listed", fi.Size(), maxEROFSDir)}
	}
	err = guard("readdir", d.name, func() (err error) { es, err = d.f.(fs.ReadDirFile).ReadDir(n); return err })
	for i, x := range es {
		es[i] = erofsDirEntry{x, d.name}
	}
	return es, err
}

// erofsDirEntry guards the Info call of a directory entry (it reads the inode).
type erofsDirEntry struct {
	fs.DirEntry
	dir string
}

func (e erofsDirEntry) Info() (fi fs.FileInfo, err error) {
	err = guard("stat", e.dir+"/"+e.Name(), func() (err error) { fi, err = e.DirEntry.Info(); return err })
	return fi, err
}
