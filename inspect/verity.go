package inspect

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/verity"
)

// Verity describes the dm-verity hash tree that protects the root filesystem: the hash partition's
// superblock (cryptsetup's struct verity_sb, as `veritysetup format` writes it; package verity), the
// root hash the kernel command line gives, and the checks made against them.
type Verity struct {
	// Partition is the hash partition (type root-*-verity, or the partition whose GUID is the last
	// 128 bits of roothash=); DataPartition the one it protects (Report.Root's), 0 when none.
	Partition     int `json:"partition"`
	DataPartition int `json:"data_partition,omitempty"`
	// Superblock is false when the hash partition does not start with a verity superblock
	// ("verity\0\0"; veritysetup --no-superblock); the superblock fields below are then zero.
	Superblock bool   `json:"superblock"`
	Version    uint32 `json:"version,omitempty"` // superblock version (1)
	// HashType is 1 for the normal format (each block hashed as H(salt ‖ block)), 0 for Chrome OS's.
	HashType      uint32 `json:"hash_type"`
	Algorithm     string `json:"algorithm,omitempty"` // "sha256"
	DataBlockSize int    `json:"data_block_size,omitempty"`
	HashBlockSize int    `json:"hash_block_size,omitempty"`
	DataBlocks    int64  `json:"data_blocks,omitempty"`
	Salt          string `json:"salt,omitempty"` // hex, as `imgfab build --json` prints it (verity.salt)
	UUID          string `json:"uuid,omitempty"` // as veritysetup prints it
	// RootHash is roothash= of the default entry's kernel command line (lower-case hex); "" when the
	// command line has none.
	RootHash string `json:"root_hash,omitempty"`
	// GUIDsMatch says whether the data partition's GUID is the first 128 bits of RootHash and the
	// hash partition's the last 128 bits: the Discoverable Partitions Specification's convention,
	// by which systemd-veritysetup-generator and systemd-gpt-auto-generator find both partitions
	// from roothash= alone. Nil without a RootHash of at least 32 bytes; a warning says which
	// GUID differs.
	GUIDsMatch *bool `json:"guids_match,omitempty"`
	// Verify is the result of recomputing the tree (Options.VerifyVerity); nil when not asked.
	Verify *VerityCheck `json:"verify,omitempty"`
}

// VerityCheck is the hash tree recomputed from the data partition with the superblock's
// parameters (package verity), compared with the hash partition and with roothash=.
type VerityCheck struct {
	// OK: the tree on the disk is the one the data gives (TreeMatch) and, when the command line has
	// roothash=, its root is that hash (RootHashMatch): the kernel will read every data block.
	OK bool `json:"ok"`
	// RootHash is the root hash computed from the data (hex).
	RootHash string `json:"root_hash,omitempty"`
	// RootHashMatch: RootHash equals Verity.RootHash (false without one).
	RootHashMatch bool `json:"root_hash_match"`
	// TreeMatch: every hash block of the tree (the superblock's block is not compared: its fields
	// are the parameters used) equals the hash partition's. HashBlocks is how many were compared;
	// BadHashBlocks how many differ, FirstBadHashBlock the first of them (its index in the hash
	// partition, in hash blocks; -1 when none differs).
	TreeMatch         bool  `json:"tree_match"`
	HashBlocks        int64 `json:"hash_blocks"`
	BadHashBlocks     int64 `json:"bad_hash_blocks"`
	FirstBadHashBlock int64 `json:"first_bad_hash_block"`
	// Error says why the tree could not be recomputed (an unsupported algorithm or block size, a
	// superblock that claims more data than the data partition holds, a read error); the other
	// fields are then zero.
	Error string `json:"error,omitempty"`
}

// Root-verity partition types of the Discoverable Partitions Specification (partition.TypeName
// does not name them), and their signature partitions.
var verityTypeNames = map[string]string{
	"2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5": "root-x86-64-verity",
	"D13C5D3B-B5D1-422A-B29F-9454FDC89D76": "root-x86-verity",
	"DF3300CE-D69F-4C92-978C-9BFB0F38D820": "root-arm64-verity",
	"7386CDF2-203C-47A9-A498-F2ECCE45A2D6": "root-arm-verity",
	"41092B05-9FC8-4523-994F-2DEF0408B176": "root-x86-64-verity-sig",
	"6DB69DE6-29F4-4758-A7A5-962190F00CE3": "root-arm64-verity-sig",
}

// isVerityType reports a root hash partition type name ("root-x86-64-verity"; not -verity-sig).
func isVerityType(name string) bool {
	return strings.HasPrefix(name, "root-") && strings.HasSuffix(name, "-verity")
}

// verityRootHash returns roothash= of a kernel command line (the last one, as systemd reads it),
// decoded; nil when there is none. A value that is not hex is an error.
func verityRootHash(cmdline string) ([]byte, error) {
	var v string
	found := false
	for _, arg := range strings.Fields(cmdline) {
		if s, ok := strings.CutPrefix(arg, "roothash="); ok {
			v, found = s, true
		}
	}
	if !found {
		return nil, nil
	}
	h, err := hex.DecodeString(v)
	if err != nil || len(h) < 16 || len(h) > 64 {
		return nil, fmt.Errorf("roothash=%q on the kernel command line is not a hash in hex", v)
	}
	return h, nil
}

// guidOfBytes formats 16 bytes as a GUID in their order (systemd's SD_ID128_UUID_FORMAT_STR: the
// root hash's halves become partition GUIDs this way), upper case as GPT GUIDs are reported.
func guidOfBytes(b []byte) string {
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// findVerity picks the root's hash partition: by roothash='s last 128 bits as its GUID, else the
// first root-*-verity partition.
func findVerity(parts []Partition, rootHash []byte) *Partition {
	if len(rootHash) >= 32 {
		g := guidOfBytes(rootHash[len(rootHash)-16:])
		for i := range parts {
			if strings.EqualFold(parts[i].GUID, g) {
				return &parts[i]
			}
		}
	}
	for i := range parts {
		if isVerityType(parts[i].Type) {
			return &parts[i]
		}
	}
	return nil
}

// veritySB is a parsed verity superblock.
type veritySB struct {
	version, hashType uint32
	uuid              [16]byte
	algorithm         string
	dbs, hbs          int64
	dataBlocks        int64
	salt              []byte
}

const veritySBSize = 512

// parseVeritySB reads struct verity_sb (cryptsetup lib/verity/verity.c; little-endian): signature
// "verity\0\0" 0, version 8, hash_type 12, uuid 16, algorithm 32 (32 bytes), data_block_size 64,
// hash_block_size 68, data_blocks 72, salt_size 80, salt 88 (256 bytes). ok is false without the
// signature; a field out of range is an error.
func parseVeritySB(b []byte) (sb veritySB, ok bool, err error) {
	if len(b) < veritySBSize || string(b[0:8]) != "verity\x00\x00" {
		return sb, false, nil
	}
	sb.version = le.Uint32(b[8:])
	sb.hashType = le.Uint32(b[12:])
	copy(sb.uuid[:], b[16:32])
	sb.algorithm = string(bytes.TrimRight(b[32:64], "\x00"))
	for _, c := range []byte(sb.algorithm) {
		if c < 0x20 || c > 0x7e {
			return sb, true, fmt.Errorf("algorithm name %q is not printable", sb.algorithm)
		}
	}
	sb.dbs, sb.hbs = int64(le.Uint32(b[64:])), int64(le.Uint32(b[68:]))
	for _, s := range []int64{sb.dbs, sb.hbs} {
		// cryptsetup's VERITY_read_sb: powers of two from 512 to 512 KiB.
		if s < 512 || s > 512<<10 || s&(s-1) != 0 {
			return sb, true, fmt.Errorf("block size %d is not a power of two from 512 to 512 KiB", s)
		}
	}
	db := le.Uint64(b[72:])
	if db == 0 || db > 1<<62/uint64(sb.dbs) {
		return sb, true, fmt.Errorf("%d data blocks", db)
	}
	sb.dataBlocks = int64(db)
	n := int(le.Uint16(b[80:]))
	if n > 256 {
		return sb, true, fmt.Errorf("salt of %d bytes, more than the superblock's 256", n)
	}
	sb.salt = bytes.Clone(b[88 : 88+n])
	return sb, true, nil
}

// inspectVerity fills rep.Verity when the disk has a root hash partition or the command line a
// roothash=; with verify it recomputes the tree (reading all of the data partition).
func inspectVerity(ctx context.Context, img io.ReaderAt, rep *Report, root *Partition, verify bool, warn func(string, ...any)) error {
	rootHash, err := verityRootHash(rep.Cmdline)
	if err != nil {
		warn("%v", err)
	}
	hp := findVerity(rep.Partitions, rootHash)
	if hp == nil && rootHash == nil {
		return nil
	}
	v := &Verity{}
	rep.Verity = v
	if rootHash != nil {
		v.RootHash = hex.EncodeToString(rootHash)
	}
	if root != nil {
		v.DataPartition = root.Number
	}
	if hp == nil {
		warn("roothash= is on the kernel command line but no partition is the root's hash partition (type root-*-verity, or GUID %s)", guidOfBytes(rootHash[max(0, len(rootHash)-16):]))
		return nil
	}
	v.Partition = hp.Number
	if len(rootHash) >= 32 {
		ok := true
		if want := guidOfBytes(rootHash[:16]); root == nil || !strings.EqualFold(root.GUID, want) {
			ok = false
			got := "no root partition"
			if root != nil {
				got = fmt.Sprintf("partition %d has GUID %s", root.Number, root.GUID)
			}
			warn("verity: the root partition's GUID should be the first half of roothash=, %s; %s", want, got)
		}
		if want := guidOfBytes(rootHash[len(rootHash)-16:]); !strings.EqualFold(hp.GUID, want) {
			ok = false
			warn("verity: the hash partition's GUID should be the last half of roothash=, %s; partition %d has GUID %s", want, hp.Number, hp.GUID)
		}
		v.GUIDsMatch = &ok
	}
	head := make([]byte, veritySBSize)
	if hp.Size < veritySBSize {
		warn("verity: hash partition %d is smaller than a superblock", hp.Number)
		return nil
	}
	if err := readAt(img, hp.Offset+hp.Size, head, hp.Offset, "verity superblock"); err != nil {
		warn("verity: partition %d: %v", hp.Number, err)
		return nil
	}
	sb, ok, err := parseVeritySB(head)
	if !ok {
		warn("verity: hash partition %d has no verity superblock", hp.Number)
		return nil
	}
	v.Superblock = true
	if err != nil {
		warn("verity: partition %d: superblock: %v", hp.Number, err)
		return nil
	}
	v.Version, v.HashType, v.Algorithm = sb.version, sb.hashType, sb.algorithm
	v.DataBlockSize, v.HashBlockSize, v.DataBlocks = int(sb.dbs), int(sb.hbs), sb.dataBlocks
	v.Salt = hex.EncodeToString(sb.salt)
	u := sb.uuid
	v.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	if root != nil && sb.dataBlocks > root.Size/sb.dbs {
		warn("verity: the superblock says %d data blocks of %d bytes, more than data partition %d holds (%d bytes)", sb.dataBlocks, sb.dbs, root.Number, root.Size)
	}
	if !verify {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := verifyVerity(ctx, img, root, hp, sb, rootHash)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		c = &VerityCheck{Error: err.Error(), FirstBadHashBlock: -1}
	}
	v.Verify = c
	return nil
}

// verifyVerity recomputes the tree of root's data with the superblock's parameters and compares it
// with the hash partition block by block as verity.Write hands the blocks out (one hash block in
// memory), and its root with roothash=.
func verifyVerity(ctx context.Context, img io.ReaderAt, root, hp *Partition, sb veritySB, rootHash []byte) (*VerityCheck, error) {
	if root == nil {
		return nil, errors.New("no data partition (the root) to verify")
	}
	if sb.hashType != 1 || sb.algorithm != "sha256" {
		return nil, fmt.Errorf("hash type %d with %s: only type 1 with sha256 is recomputed", sb.hashType, sb.algorithm)
	}
	if sb.dbs > 4096 || sb.hbs > 4096 {
		return nil, fmt.Errorf("block sizes %d/%d: only up to 4096 are recomputed", sb.dbs, sb.hbs)
	}
	if sb.dataBlocks > root.Size/sb.dbs {
		return nil, fmt.Errorf("the superblock says %d data blocks of %d bytes, more than data partition %d holds (%d bytes)", sb.dataBlocks, sb.dbs, root.Number, root.Size)
	}
	p := verity.Params{Salt: sb.salt, UUID: sb.uuid, DataBlockSize: int(sb.dbs), HashBlockSize: int(sb.hbs)}
	cmp := &treeCompare{r: io.NewSectionReader(img, hp.Offset, hp.Size), size: hp.Size, hbs: sb.hbs, buf: make([]byte, sb.hbs), first: -1}
	tree, err := verity.Write(ctx, io.NewSectionReader(img, root.Offset, root.Size), sb.dataBlocks*sb.dbs, cmp, p)
	if err != nil {
		return nil, err
	}
	c := &VerityCheck{RootHash: hex.EncodeToString(tree.RootHash[:]), HashBlocks: cmp.blocks, BadHashBlocks: cmp.bad, FirstBadHashBlock: cmp.first}
	c.RootHashMatch = rootHash != nil && bytes.Equal(tree.RootHash[:], rootHash)
	c.TreeMatch = cmp.bad == 0
	c.OK = c.TreeMatch && (rootHash == nil || c.RootHashMatch)
	return c, nil
}

// treeCompare is the io.WriterAt verity.Write writes the hash area to: it compares each hash block
// with the hash partition's instead of writing it. verity.Write calls it from one goroutine, in
// order; the superblock's block (at 0) is skipped.
type treeCompare struct {
	r      io.ReaderAt
	size   int64
	hbs    int64
	buf    []byte
	blocks int64 // hash blocks compared
	bad    int64 // of which differ
	first  int64 // the first that differs, -1
}

func (c *treeCompare) WriteAt(p []byte, off int64) (int, error) {
	for i := int64(0); i < int64(len(p)); i += c.hbs {
		at := off + i
		if at < c.hbs {
			continue // the superblock's block
		}
		blk := p[i:min(i+c.hbs, int64(len(p)))]
		c.blocks++
		same := false
		if at <= c.size && int64(len(blk)) <= c.size-at { // else: past the end of the partition
			b := c.buf[:len(blk)]
			if n, err := c.r.ReadAt(b, at); n < len(b) {
				return 0, fmt.Errorf("reading hash block %d of the hash partition: %w", at/c.hbs, err)
			}
			same = bytes.Equal(b, blk)
		}
		if !same {
			if c.bad == 0 {
				c.first = at / c.hbs
			}
			c.bad++
		}
	}
	return len(p), nil
}

// typeName names a GPT partition type: partition.TypeName's names, and the verity types.
func typeName(guid string) string {
	if n := partition.TypeName(guid); n != "" {
		return n
	}
	return verityTypeNames[guid]
}
