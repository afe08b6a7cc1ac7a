package assemble

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/imgfab/imgfab/customize"
	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/rootfs/ext4"
)

// ExtraPartition is a partition of a class beyond the ESP and the root. Extra partitions sit
// between the ESP and the root, in the Plan's order, each on a 1 MiB boundary; the root stays
// last, so that it can grow into a larger disk on first boot.
//
// An ext4 partition holds what the image has under Mount (the root keeps Mount as an empty
// directory with the image's mode and owner); an empty or missing mount point gets an empty
// filesystem. A hard link between a file under Mount and one outside it is an error: one inode
// cannot be on two filesystems, and silently making two files of it would change what a write to
// either does. A swap partition gets a Linux swap signature (mkswap's version-1 header); FS
// "none" is left zeroed. Mounted and swap partitions get an /etc/fstab line (see fstabEntries).
type ExtraPartition struct {
	Mount string // "/var"; "" for swap and raw partitions
	Size  int64  // bytes, a whole number of MiB
	FS    string // "ext4", "swap" or "none"
	// Label is the GPT partition name and the filesystem (or swap) label; "" names the partition
	// after the last element of Mount ("swap" or "data" without one) and labels the ext4
	// filesystem so, the swap area not at all.
	Label string
	Type  string // GPT type GUID, upper case (partition.TypeVar, …)
	Where string // where it was given ("imgfab.yaml:30:9"), prefixing its errors
}

// name is the GPT partition name: the label, else the mount point's last element.
func (x ExtraPartition) name() string {
	switch {
	case x.Label != "":
		return x.Label
	case x.Mount != "":
		return clipBytes(path.Base(x.Mount), 36)
	case x.FS == "swap":
		return "swap"
	}
	return "data"
}

// what names the partition in errors: its mount point, else its name.
func (x ExtraPartition) what(i int) string {
	s := fmt.Sprintf("partition %d (%s", i+2, x.name())
	if x.Mount != "" {
		s += " on " + x.Mount
	}
	return s + ")"
}

// key is the label its identifiers are derived under: the mount point, else its index.
func (x ExtraPartition) key(i int) string {
	if x.Mount != "" {
		return "part-" + x.Mount
	}
	return fmt.Sprintf("part-%d", i)
}

func clipBytes(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// checkPartitions checks the Plan's extra partitions before any work.
func checkPartitions(ps []ExtraPartition) error {
	mounts := map[string]bool{}
	for i, x := range ps {
		fail := func(format string, a ...any) error {
			msg := x.what(i) + ": " + fmt.Sprintf(format, a...)
			if x.Where != "" {
				msg = x.Where + ": " + msg
			}
			return errors.New(msg)
		}
		if x.Size < partition.MiB || x.Size > MaxDiskSize || x.Size%partition.MiB != 0 {
			return fail("size %d: want a whole number of MiB, 1 MiB to %d TiB", x.Size, MaxDiskSize>>40)
		}
		switch x.FS {
		case "ext4":
			if x.Mount == "" || x.Mount == "/" || path.Clean(x.Mount) != x.Mount || !path.IsAbs(x.Mount) ||
				strings.ContainsAny(x.Mount, " \t\n\\#\x00") {
				return fail("mount point %q: want a clean absolute path other than /, without blanks, '\\' or '#'", x.Mount)
			}
			if mounts[x.Mount] {
				return fail("%s is mounted twice", x.Mount)
			}
			mounts[x.Mount] = true
		case "swap", "none":
			if x.Mount != "" {
				return fail("fs %s is not mounted, but has mount point %s", x.FS, x.Mount)
			}
		default:
			return fail("fs %q: want ext4, swap or none", x.FS)
		}
		if len(x.Label) > 16 {
			return fail("label %q is %d bytes, ext4 and swap labels hold 16", x.Label, len(x.Label))
		}
		if partition.TypeName(x.Type) == "" {
			return fail("type GUID %q: not a Discoverable Partitions type imgfab knows", x.Type)
		}
	}
	return nil
}

// extraPart is one extra partition as the build made it.
type extraPart struct {
	ExtraPartition
	index    int
	guid     string
	offset   int64
	fsUUID   [16]byte
	hashSeed [16]byte
	rel      string     // Mount without its leading "/"; "" unless ext4
	fsw      partWriter // an *ext4.Writer, or the spool of a read-only disk's /var
	mbrNum   int        // its number in the table (2 for the first)

	// What the stream routed to it, for the size error: file data in whole blocks, entries, and
	// the least metadata they take (an inode each, a block a directory).
	dataBytes, entries, metaBytes int64
	full                          error // the ext4.ErrFull it stopped with; the stream goes on to count
	seenMountPoint                bool
}

// derivePartitions derives each extra partition's identifiers from partSeed: the build's seed
// with the user's customisation but without the generated fstab lines, which hold these very
// identifiers (the seed of everything else includes the final layer, and so the fstab lines; a
// GUID taken from it would be a fixed point that does not exist). PARTUUID= stays the reference
// in fstab: a label ("LABEL=var") would be shared by every disk imgfab makes with a /var and
// resolve to the wrong one when two are attached. Nor is systemd's gpt-auto-generator relied on:
// it mounts /var by type only when the root partition's type and the machine-id match.
func (b *build) derivePartitions() {
	if len(b.p.Partitions) == 0 || b.parts != nil {
		return
	}
	off := partition.Head + b.espSize
	b.parts = make([]*extraPart, len(b.p.Partitions))
	for i, x := range b.p.Partitions {
		k := x.key(i)
		e := &extraPart{ExtraPartition: x, index: i, offset: off, mbrNum: i + 2,
			guid:     partition.DeriveGUID(b.partSeed, k),
			fsUUID:   partition.DeriveUUID(b.partSeed, k+"-fs-uuid"),
			hashSeed: partition.DeriveUUID(b.partSeed, k+"-fs-hash-seed"),
		}
		if x.FS == "ext4" {
			e.rel = x.Mount[1:]
		}
		b.parts[i] = e
		off += x.Size
	}
}

// fstabEntries are the fstab lines of the mounted and swap partitions: mount points in the
// Plan's order, a parent before its children (/var before /var/tmp), then the swap areas. On a
// GPT disk a partition is PARTUUID=<its GUID>; on an MBR disk PARTUUID=<signature>-<number>,
// the signature derived from partSeed too.
func (b *build) fstabEntries() []customize.FstabEntry {
	table := b.p.Boot.Table
	var sig uint32
	if table == "mbr" {
		sig = partition.DiskSignature(b.partSeed)
	}
	ref := func(e *extraPart) string {
		if table == "mbr" {
			return "PARTUUID=" + partition.MBRPartUUID(sig, e.mbrNum)
		}
		return "PARTUUID=" + strings.ToLower(e.guid)
	}
	var mounted, swaps []customize.FstabEntry
	var depth []int
	for _, e := range b.parts {
		switch e.FS {
		case "ext4":
			mounted = append(mounted, customize.FstabEntry{Spec: ref(e), Mount: e.Mount, FS: "ext4", Options: "defaults", Pass: 2, Where: e.Where})
			depth = append(depth, strings.Count(e.Mount, "/"))
		case "swap":
			swaps = append(swaps, customize.FstabEntry{Spec: ref(e), Mount: "none", FS: "swap", Options: "sw", Where: e.Where})
		}
	}
	idx := make([]int, len(mounted))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, c int) int { return depth[a] - depth[c] })
	var out []customize.FstabEntry
	for _, i := range idx {
		out = append(out, mounted[i])
	}
	return append(out, swaps...)
}

// needsFstab says whether a partition of the plan is mounted or swap.
func needsFstab(ps []ExtraPartition) bool {
	for _, x := range ps {
		if x.FS == "ext4" || x.FS == "swap" {
			return true
		}
	}
	return false
}

// extraSpecs are the layout specs of the extra partitions.
func (b *build) extraSpecs() []partition.Spec {
	var s []partition.Spec
	for _, e := range b.parts {
		s = append(s, partition.Spec{Name: e.name(), Type: e.Type, GUID: e.guid, Size: e.Size})
	}
	return s
}

// extrasSize is the room the extra partitions take.
func (b *build) extrasSize() int64 {
	var n int64
	for _, e := range b.parts {
		n += e.Size
	}
	return n
}

// openExtras starts an ext4 writer on each ext4 partition's region of f.
func (b *build) openExtras(f io.WriterAt) error {
	for _, e := range b.parts {
		if e.FS != "ext4" {
			continue
		}
		label := e.Label
		if label == "" {
			label = clipBytes(path.Base(e.Mount), 16)
		}
		w, err := ext4.NewWriter(offsetWriter{f, e.offset}, ext4.Options{Size: e.Size, UUID: e.fsUUID, HashSeed: e.hashSeed,
			Time: b.epoch, Label: label, NoJournal: b.p.NoJournal})
		if err != nil {
			return fmt.Errorf("build: %s: %w", e.what(e.index), err)
		}
		e.fsw = w
	}
	return nil
}

// closeExtras finishes the ext4 partitions and writes the swap signatures.
func (b *build) closeExtras(f io.WriterAt) error {
	for _, e := range b.parts {
		switch {
		case e.full != nil:
			return b.fullError(e)
		case e.fsw != nil:
			if err := e.fsw.Close(); err != nil {
				if errors.Is(err, ext4.ErrFull) {
					e.full = err
					return b.fullError(e)
				}
				return fmt.Errorf("build: %s: %w", e.what(e.index), err)
			}
		case e.FS == "swap":
			if err := writeSwap(offsetWriter{f, e.offset}, e.Size, partition.DeriveUUID(b.partSeed, e.key(e.index)+"-swap-uuid"), e.Label); err != nil {
				return fmt.Errorf("build: %s: %w", e.what(e.index), err)
			}
		}
	}
	return nil
}

// fullError says that an ext4 partition is too small, with what the image has under its mount
// point (the stream was read to its end to count it).
func (b *build) fullError(e *extraPart) error {
	need := partition.AlignUp(e.dataBytes + e.metaBytes)
	return fmt.Errorf("build: %s: %w\n%s: %d MiB is too small for its content: the image has %d MiB of file data (%d entries) under %s, so it needs more than %d MiB with ext4's metadata and journal; raise its size",
		e.what(e.index), e.full, e.what(e.index), e.Size/partition.MiB, e.dataBytes>>20, e.entries, e.Mount, need/partition.MiB)
}

// extraResults are the extra partitions' entries of Result.Partitions (after the ESP).
func (b *build) fillPartitionResults() {
	parts := b.parts
	if b.varPart != nil {
		parts = append(slices.Clone(parts), b.varPart)
	}
	for _, e := range parts {
		for i := range b.res.Partitions {
			r := &b.res.Partitions[i]
			if r.GUID == e.guid {
				r.Mount, r.FS = e.Mount, e.FS
				if e.FS == "ext4" {
					r.FSUUID = uuidString(e.fsUUID)
				}
			}
		}
	}
}

// offsetWriter is a window of f at a fixed offset.
type offsetWriter struct {
	f   io.WriterAt
	off int64
}

func (w offsetWriter) WriteAt(p []byte, off int64) (int, error) { return w.f.WriteAt(p, w.off+off) }

// swapPage is the page size of the swap header: x86-64's (and arm64's usual) 4 KiB. A kernel
// with larger pages reads last_page in its own pages and refuses the area as mkswap's would be.
const swapPage = 4096

// writeSwap writes a Linux swap signature at the start of w as mkswap does (the kernel's
// include/linux/swap.h, union swap_header): the first 1024 bytes left for boot bits, then
// version 1, last_page, nr_badpages 0, the UUID and a 16-byte label (little-endian, x86's byte
// order), and "SWAPSPACE2" in the last 10 bytes of the first page.
func writeSwap(w io.WriterAt, size int64, uuid [16]byte, label string) error {
	pages := size / swapPage
	if pages < 10 || pages-1 > 1<<32-1 {
		return fmt.Errorf("swap: %d pages of %d bytes: want 10 to 2^32", pages, swapPage)
	}
	if len(label) > 16 {
		return fmt.Errorf("swap: label %q is longer than 16 bytes", label)
	}
	var page [swapPage]byte
	binary.LittleEndian.PutUint32(page[1024:], 1)               // version
	binary.LittleEndian.PutUint32(page[1028:], uint32(pages-1)) // last_page
	binary.LittleEndian.PutUint32(page[1032:], 0)               // nr_badpages
	copy(page[1036:1052], uuid[:])                              // sws_uuid
	copy(page[1052:1068], label)                                // sws_volume
	copy(page[swapPage-10:], "SWAPSPACE2")                      // magic
	if _, err := w.WriteAt(page[:], 0); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	return nil
}

// entryAdder takes the flattened stream's entries: a filesystem writer (ext4, erofs) or a spool.
type entryAdder interface {
	Add(hdr *tar.Header, body io.Reader) error
}

// partWriter is what the router writes a mounted partition's entries to.
type partWriter interface {
	entryAdder
	Close() error
}

// fsError is an entry's error in one filesystem: "root filesystem" or "partition 2 (var on
// /var)".
type fsError struct {
	fs  string
	err error
}

func (e *fsError) Error() string { return e.fs + ": " + e.err.Error() }
func (e *fsError) Unwrap() error { return e.err }

// router adds the flattened stream's entries to the root filesystem and the ext4 partitions:
// an entry below a mount point goes to the innermost partition mounted above it, its name (and a
// hard link's target) relative to the mount point; a mount point's own entry goes to the
// filesystem it is a directory of and, as ".", to its partition's root, so both have the image's
// mode and owner.
type router struct {
	root   entryAdder
	mounts []*extraPart // ext4 partitions, innermost (longest mount point) first
	epoch  int64
}

func newRouter(root entryAdder, parts []*extraPart, epoch int64) *router {
	r := &router{root: root, epoch: epoch}
	for _, e := range parts {
		if e.fsw != nil {
			r.mounts = append(r.mounts, e)
		}
	}
	slices.SortStableFunc(r.mounts, func(a, c *extraPart) int { return len(c.rel) - len(a.rel) })
	return r
}

// route is the partition that holds name (nil: the root) and name relative to it.
func (r *router) route(name string) (*extraPart, string) {
	for _, m := range r.mounts {
		if rest, ok := strings.CutPrefix(name, m.rel+"/"); ok {
			return m, rest
		}
	}
	return nil, name
}

func fsName(e *extraPart) string {
	if e == nil {
		return "root filesystem"
	}
	return e.what(e.index)
}

// add routes one entry.
func (r *router) add(hdr *tar.Header, body io.Reader) error {
	if len(r.mounts) == 0 {
		if err := r.root.Add(hdr, body); err != nil {
			return &fsError{"root filesystem", err}
		}
		return nil
	}
	for _, m := range r.mounts {
		if hdr.Name == m.rel {
			return r.addMountPoint(m, hdr)
		}
	}
	e, rel := r.route(hdr.Name)
	h := *hdr
	h.Name = rel
	if hdr.Typeflag == tar.TypeLink {
		te, trel := r.route(hdr.Linkname)
		if te != e {
			return &fsError{fsName(e), fmt.Errorf("hard link %s → %s crosses a mount point: one inode cannot be on two filesystems (%s, %s); replace the link with a copy or a symlink in a layer",
				"/"+hdr.Name, "/"+hdr.Linkname, fsName(e), fsName(te))}
		}
		h.Linkname = trel
	}
	if e == nil {
		if err := r.root.Add(&h, body); err != nil {
			return &fsError{"root filesystem", err}
		}
		return nil
	}
	e.entries++
	e.metaBytes += 256
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		e.dataBytes += (hdr.Size + 4095) &^ 4095
	case tar.TypeDir:
		e.metaBytes += 4096
	}
	if e.full != nil {
		return nil // counting only
	}
	if err := e.fsw.Add(&h, body); err != nil {
		if errors.Is(err, ext4.ErrFull) {
			e.full = err
			return nil
		}
		return &fsError{fsName(e), err}
	}
	return nil
}

// addMountPoint adds a mount point's entry to its parent filesystem and to the root of its own.
func (r *router) addMountPoint(m *extraPart, hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return &fsError{fsName(m), fmt.Errorf("the image has %s as a %s, not a directory: it cannot be a mount point", m.Mount, typeName(hdr.Typeflag))}
	}
	m.seenMountPoint = true
	pe, rel := r.route(hdr.Name)
	h := *hdr
	h.Name = rel
	if err := r.writer(pe).Add(&h, nil); err != nil {
		return &fsError{fsName(pe), err}
	}
	h.Name = "."
	if m.full == nil {
		if err := m.fsw.Add(&h, nil); err != nil {
			return &fsError{fsName(m), err}
		}
	}
	return nil
}

func (r *router) writer(e *extraPart) entryAdder {
	if e == nil {
		return r.root
	}
	return e.fsw
}

// finish adds the mount points that the stream did not have as entries (their parents or
// contents made them implicitly, or nothing did) to their parent filesystems, as directories
// 0755 root:root.
func (r *router) finish() error {
	// Outermost first, so that a parent mount point exists before its child's.
	for i := len(r.mounts) - 1; i >= 0; i-- {
		m := r.mounts[i]
		if m.seenMountPoint {
			continue
		}
		pe, rel := r.route(m.rel)
		if pe != nil && pe.full != nil {
			continue
		}
		h := &tar.Header{Name: rel, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(r.epoch, 0)}
		if err := r.writer(pe).Add(h, nil); err != nil {
			return &fsError{fsName(pe), err}
		}
	}
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeReg, tar.TypeRegA:
		return "regular file"
	}
	return fmt.Sprintf("tar type %q", t)
}
