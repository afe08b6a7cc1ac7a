package assemble

import (
	"archive/tar"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	goerofs "github.com/erofs/go-erofs"

	"github.com/imgfab/imgfab/internal/iox"
	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/rootfs/erofs"
	"github.com/imgfab/imgfab/rootfs/ext4"
	"github.com/imgfab/imgfab/verity"
)

// A read-only disk (Plan.RootFS "erofs") is laid out as
//
//	ESP | extra partitions | root (erofs) | root-verity (with Plan.Verity) | /var (ext4)
//
// /var is last so that it, the one writable filesystem, grows into a larger disk on first boot.
// Its entries cannot be written while the layers stream, as its offset follows the root's size,
// which is known only at the end; they are spooled to a tar file beside the output (what an image
// has under /var: package databases, caches, usually a few MiB) and written after the root.
//
// Under dm-verity the partition UUIDs of the root and its hash partition are the first and the
// last 128 bits of the root hash (the convention of systemd-repart and of
// systemd-veritysetup-generator, which opens /dev/mapper/root from roothash= alone), and the
// kernel command line says root=/dev/mapper/root … roothash=<hex>.

// VerityResult describes the dm-verity hash tree of the root, for --json.
type VerityResult struct {
	RootHash   string `json:"root_hash"`
	Salt       string `json:"salt"`
	DataBlocks int64  `json:"data_blocks"`
	HashBytes  int64  `json:"hash_bytes"` // superblock and tree
}

// Root-verity partition types of the Discoverable Partitions Specification.
var rootVerityTypes = map[string]string{
	"amd64": "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
	"arm64": "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
}

// checkReadOnly checks the read-only root options of a plan.
func checkReadOnly(p *Plan) error {
	switch p.RootFS {
	case "", "ext4":
		if p.Verity {
			return errors.New("--verity needs --rootfs erofs (a read-only root: a writable one cannot be verified)")
		}
		return nil
	case "erofs":
	default:
		return fmt.Errorf("--rootfs %q: want ext4 or erofs", p.RootFS)
	}
	if p.Boot.Table == "mbr" {
		return errors.New("--rootfs erofs needs a GPT disk: its /var partition grows on first boot with systemd-repart, which reads GPT only")
	}
	for _, x := range p.Partitions {
		if x.Mount == "/var" {
			return errors.New("--rootfs erofs makes /var a partition of its own (the last, to grow on first boot): leave the class's /var partition out")
		}
	}
	return nil
}

// readOnly reports a read-only root.
func (p *Plan) readOnly() bool { return p.RootFS == "erofs" }

// rootRef is what the kernel command line says of the root: its device and options.
func (b *build) rootRef(partuuid string) string {
	switch {
	case b.p.Verity:
		return "root=/dev/mapper/root rootfstype=erofs ro roothash=" + b.res.Verity.RootHash
	case b.p.readOnly():
		return "root=PARTUUID=" + partuuid + " rootfstype=erofs ro"
	}
	return "root=PARTUUID=" + partuuid + " rw"
}

// buildReadOnlyRoot writes the erofs root, its hash tree and /var, and lays out the disk.
func (b *build) buildReadOnlyRoot(ctx context.Context, f iox.DiskFile) error {
	p := &b.p
	rootOff := partition.Head + b.espSize + b.extrasSize()
	maxRoot := int64(0)
	if p.Size != 0 {
		// What --size leaves for the root: the disk but for the partitions before it, the backup
		// GPT, /var's least and a MiB of alignment for each of the root and its hash tree, which
		// takes 1/128 of the data and a few blocks.
		maxRoot = p.Size - partition.Tail - rootOff - minVar - 2*partition.MiB
		if p.Verity {
			maxRoot = maxRoot/129*128 - 64<<10
		}
		if maxRoot < 4096 {
			return fmt.Errorf("build: --size %d MiB is too small: the ESP and the partitions before the root end at %d MiB, and /var needs %d MiB; raise --size, or leave it out to size the disk from the content",
				p.Size/partition.MiB, rootOff/partition.MiB, minVar/partition.MiB)
		}
	}
	fsw, err := erofs.NewWriter(region{f, rootOff}, erofs.Options{UUID: b.fsUUID, Time: b.epoch, Label: "root", MaxSize: maxRoot})
	if err != nil {
		return fmt.Errorf("build: root filesystem: %w", err)
	}
	if err := b.openExtras(f); err != nil {
		return err
	}
	spool, err := newTarSpool(filepath.Dir(b.scratchFor))
	if err != nil {
		return fmt.Errorf("build: /var: %w", err)
	}
	defer spool.remove()
	// Its number: after the ESP, the class's partitions, the root and the hash tree (what()
	// names partition index+2).
	num := len(b.parts) + 3
	if p.Verity {
		num++
	}
	varPart := &extraPart{ExtraPartition: ExtraPartition{Mount: "/var", FS: "ext4", Label: "var", Type: partition.TypeVar},
		index: num - 2, rel: "var", fsw: spool, mbrNum: num,
		guid:     partition.DeriveGUID(b.seed, "var"),
		fsUUID:   partition.DeriveUUID(b.seed, "var-fs-uuid"),
		hashSeed: partition.DeriveUUID(b.seed, "var-fs-hash-seed"),
	}
	hint := func(err error) error { return roSizeHint(err, p.Size, maxRoot) }
	if err := b.fill(ctx, f, fsw, append(slices.Clone(b.parts), varPart), uuidString(varPart.fsUUID), hint); err != nil {
		return err
	}
	rootSize := partition.AlignUp(fsw.Size())
	specs := append([]partition.Spec{{Name: "esp", Type: partition.TypeESP, GUID: b.espGUID, Size: b.espSize}}, b.extraSpecs()...)
	rootType, rootName, _ := partition.RootType(b.arch.Name)
	rootGUID := b.rootGUID
	next := rootOff + rootSize
	var veritySpec []partition.Spec
	if p.Verity {
		p.progress(Event{Stage: "verity"})
		salt := partition.DeriveUUID(b.seed, "verity-salt")
		salt2 := partition.DeriveUUID(b.seed, "verity-salt-2")
		params := verity.Params{Salt: append(salt[:], salt2[:]...), UUID: partition.DeriveUUID(b.seed, "verity-uuid")}
		hashSize, err := verity.HashSize(fsw.Size(), params)
		if err != nil {
			return fmt.Errorf("build: verity: %w", err)
		}
		tree, err := verity.Write(ctx, region{f, rootOff}, fsw.Size(), region{f, next}, params)
		if err != nil {
			return fmt.Errorf("build: verity: %w", err)
		}
		b.res.Verity = &VerityResult{RootHash: hex.EncodeToString(tree.RootHash[:]), Salt: hex.EncodeToString(params.Salt),
			DataBlocks: tree.DataBlocks, HashBytes: tree.HashSize}
		rootGUID = guidOf(tree.RootHash[:16])
		b.rootGUID = rootGUID
		vsize := partition.AlignUp(hashSize)
		veritySpec = []partition.Spec{{Name: rootName + "-verity", Type: rootVerityTypes[b.arch.Name],
			GUID: guidOf(tree.RootHash[16:]), Size: vsize}}
		next += vsize
	}
	// /var: the rest of a --size disk, else its content and the usual headroom.
	var varSize int64
	if p.Size != 0 {
		varSize = p.Size - partition.Tail - next
		if varSize < minVar {
			return fmt.Errorf("build: --size %d MiB is too small for this image: the root takes %d MiB and its hash tree %d MiB, leaving %d MiB for /var (at least %d); raise --size, or leave it out to size the disk from the content",
				p.Size/partition.MiB, rootSize/partition.MiB, (next-rootOff-rootSize)/partition.MiB, max(varSize, 0)/partition.MiB, minVar/partition.MiB)
		}
	}
	varPart.offset = next
	if err := b.writeVar(varPart, spool, f, varSize); err != nil {
		return err
	}
	if varSize == 0 {
		varSize = partition.AlignUp(varPart.fsw.(*ext4.Writer).Size())
	}
	specs = append(specs, partition.Spec{Name: rootName, Type: rootType, GUID: rootGUID, Size: rootSize})
	specs = append(specs, veritySpec...)
	specs = append(specs, partition.Spec{Name: "var", Type: partition.TypeVar, GUID: varPart.guid, Size: varSize})
	b.layout, err = partition.Plan(p.Size, b.diskGUID, specs)
	if err != nil {
		return fmt.Errorf("build: partition layout: %w", err)
	}
	if err := f.Truncate(b.layout.Size); err != nil {
		return fmt.Errorf("build: sizing disk to %d MiB: %w", b.layout.Size/partition.MiB, err)
	}
	b.varPart = varPart
	b.roSize = fsw.Size()
	b.roOff = rootOff
	b.roDisk = f
	b.res.RootFS = RootFSResult{Type: "erofs", UUID: uuidString(b.fsUUID), Size: fsw.Size()}
	return nil
}

// minVar is the least /var partition of a read-only disk with a --size.
const minVar = 8 * partition.MiB

// roSizeHint says which option to change when the erofs root outgrew what --size leaves it.
func roSizeHint(err error, diskSize, maxRoot int64) error {
	if !errors.Is(err, erofs.ErrFull) {
		return err
	}
	return fmt.Errorf("%w\n--size %d MiB is too small for this image: it leaves %d MiB for the read-only root (after the partitions before it, its hash tree and %d MiB of /var); raise --size, or leave it out to size the disk from the content",
		err, diskSize/partition.MiB, maxRoot/partition.MiB, minVar/partition.MiB)
}

// guidOf formats 16 bytes as a GUID string in their order (as systemd's SD_ID128_UUID_FORMAT_STR).
func guidOf(b []byte) string {
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// writeVar writes /var's ext4 filesystem at its offset from the spooled entries.
func (b *build) writeVar(e *extraPart, spool *tarSpool, f iox.DiskFile, size int64) error {
	const what = "/var partition"
	w, err := ext4.NewWriter(offsetWriter{f, e.offset}, ext4.Options{Size: size, UUID: e.fsUUID, HashSeed: e.hashSeed,
		Time: b.epoch, Label: "var", NoJournal: b.p.NoJournal})
	if err != nil {
		return fmt.Errorf("build: %s: %w", what, err)
	}
	full := func(err error) error {
		err = fmt.Errorf("build: %s: %w", what, err)
		if !errors.Is(err, ext4.ErrFull) {
			return err
		}
		return fmt.Errorf("%w\n--size %d MiB is too small for this image: /var gets the %d MiB left after the root and its hash tree; raise --size, or leave it out to size the disk from the content",
			err, b.p.Size/partition.MiB, size/partition.MiB)
	}
	if err := spool.replay(w.Add); err != nil {
		return full(err)
	}
	if err := w.Close(); err != nil {
		return full(err)
	}
	e.fsw = w
	return nil
}

// readOnlyTree reads the finished erofs root back (the kernel, initrd and loaders it holds).
func (b *build) readOnlyTree() (fs.FS, error) {
	return goerofs.Open(io.NewSectionReader(region{b.roDisk, b.roOff}, 0, b.roSize))
}

// tarSpool keeps a partition's entries in a temporary tar file until its offset is known.
type tarSpool struct {
	f  *os.File
	tw *tar.Writer
}

func newTarSpool(dir string) (*tarSpool, error) {
	f, err := os.CreateTemp(dir, ".imgfab-spool-*.tar")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &tarSpool{f: f, tw: tar.NewWriter(f)}, nil
}

// Add appends one entry.
func (s *tarSpool) Add(hdr *tar.Header, body io.Reader) error {
	h := *hdr
	h.Format = tar.FormatPAX
	if err := s.tw.WriteHeader(&h); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if body != nil && (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) {
		if _, err := io.Copy(s.tw, body); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

// Close ends the spool's tar stream (the router's partWriter).
func (s *tarSpool) Close() error { return s.tw.Close() }

// replay passes every spooled entry to add, in order.
func (s *tarSpool) replay(add func(*tar.Header, io.Reader) error) error {
	if err := s.tw.Close(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	tr := tar.NewReader(s.f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := add(h, tr); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
}

func (s *tarSpool) remove() {
	s.f.Close()
	os.Remove(s.f.Name())
}
