package assemble

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imgfab/imgfab/internal/iox"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/customize"
	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/firstboot"
	"github.com/imgfab/imgfab/layers"
	"github.com/imgfab/imgfab/partition"
	"github.com/imgfab/imgfab/rootfs"
	"github.com/imgfab/imgfab/rootfs/ext4"
)

// DefaultESPSize is the EFI System Partition size when the plan gives none.
const DefaultESPSize = 256 * partition.MiB

// MaxDiskSize is the largest disk a build makes: 64 TiB, the largest volume AWS EBS takes and
// the most a GCE image tarball may hold. Formats with a lower limit (VHD) check their own.
const MaxDiskSize = 64 << 40

// MaxEpoch is the latest SourceDateEpoch, 2106-02-07T06:28:15Z: gzip's MTIME and the tar and VHD
// timestamps that imgfab writes are 32-bit unsigned seconds. The earliest is 0; FAT, which cannot
// go before 1980, gets its dates clamped to 1980-01-01 (bootloader.FATTime).
const MaxEpoch = 1<<32 - 1

// RangeError is a number of a Plan outside what a build can make. Field is the Plan's field
// ("Size", "ESPSize", "SourceDateEpoch"); Want says the range. The CLI reports it as a usage
// error in the user's own spelling of the value.
type RangeError struct {
	Field string
	Value int64
	Want  string
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("%s %d: want %s", e.Field, e.Value, e.Want)
}

// Ranges of the numbers CheckNumbers checks, as RangeError.Want says them.
var (
	SizeWant    = fmt.Sprintf("a whole number of MiB, at most %d TiB (the largest disk imgfab builds)", MaxDiskSize>>40)
	ESPSizeWant = fmt.Sprintf("%d MiB to %d GiB", bootloader.MinESPSize>>20, bootloader.MaxESPSize>>30)
	EpochWant   = fmt.Sprintf("a unix time from 0 to %d (1970-01-01 to 2106-02-07, what gzip, tar and VHD timestamps hold)", int64(MaxEpoch))
)

// CheckNumbers range-checks the plan's sizes and epoch; Run calls it before any work. Its error
// is a *RangeError.
func (p *Plan) CheckNumbers() error {
	if p.Size < 0 || p.Size > MaxDiskSize || p.Size%partition.MiB != 0 {
		return &RangeError{"Size", p.Size, SizeWant}
	}
	if p.ESPSize != 0 && (p.ESPSize < bootloader.MinESPSize || p.ESPSize > bootloader.MaxESPSize) {
		return &RangeError{"ESPSize", p.ESPSize, ESPSizeWant}
	}
	if e := p.SourceDateEpoch; e != nil && (*e < 0 || *e > MaxEpoch) {
		return &RangeError{"SourceDateEpoch", *e, EpochWant}
	}
	return nil
}

// imageEpoch is the epoch from the image config's created time, clamped to [0, MaxEpoch] with a
// warning: images made by reproducible builders often say 1970-01-01 or Go's zero time (year 1).
func imageEpoch(created time.Time) (int64, string) {
	if created.IsZero() {
		return 0, ""
	}
	switch e := created.Unix(); {
	case e < 0:
		return 0, fmt.Sprintf("image config: created %s is before 1970; timestamps use 1970-01-01 (set --source-date-epoch to choose)", created.UTC().Format(time.RFC3339))
	case e > MaxEpoch:
		return MaxEpoch, fmt.Sprintf("image config: created %s is after 2106-02-07; timestamps use 2106-02-07 (set --source-date-epoch to choose)", created.UTC().Format(time.RFC3339))
	default:
		return e, ""
	}
}

// Output is one requested output file.
type Output struct {
	Path     string // "-" streams to Plan.Stdout
	Format   string // a diskfmt name ("raw", "qcow2", …); empty: from the extension
	Compress string // diskfmt.Options.Compress: "", "deflate", "zstd", "xz", "gzip"
}

// Plan is everything a build needs, as plain data.
type Plan struct {
	Source      string   // oci:DIR[:TAG], docker-archive:FILE, docker://REF or REF
	Platform    string   // "linux/amd64" when empty
	ExtraLayers []string // --layer paths, applied on top in order
	// SeedLayers, when not nil, is how the extra layers go into the build's seed instead of their
	// ExtraLayers paths: a class file's layers as written, relative to the file (the paths it
	// opens are made absolute), so that its bytes do not depend on the working directory and
	// equal those of the flags --print-spec turned into it.
	SeedLayers []string
	Outputs    []Output
	Size       int64  // whole disk in bytes (a multiple of 1 MiB); 0: content + headroom
	ESPSize    int64  // 0: DefaultESPSize
	Cmdline    string // appended after "root=PARTUUID=<root> rw"
	// SourceDateEpoch is the time of every timestamp imgfab makes; nil: the image's created time.
	SourceDateEpoch *int64
	Insecure        bool // plain-HTTP registry
	NoJournal       bool
	Progress        func(Event) // optional
	Stdout          io.Writer   // where an output "-" goes
	Boot            BootOptions
	// Customize, when set, is laid over the image and the extra layers as one generated top
	// layer (customize.Layer, computed from the image's own files); its digest goes into the
	// build's seed and Result.Customize. Nil: the build is as without it, byte for byte.
	Customize *customize.Config
	// Partitions are the extra partitions between the ESP and the root, in order (see
	// ExtraPartition). Nil: the disk is the ESP and the root, byte for byte as before.
	Partitions []ExtraPartition
	// FirstBoot says which first-boot preparations to leave out (package firstboot: growth,
	// identity, fstab). The zero value does them all.
	FirstBoot FirstBootOptions
	// RootFS is the root's filesystem: "ext4" (the default; writable) or "erofs" (read-only, with
	// /var on an ext4 partition of its own, the last of the disk; see readonly.go).
	RootFS string
	// Verity puts the erofs root under dm-verity: its hash tree in a root-verity partition,
	// roothash= on the kernel command line.
	Verity bool
	// Sign, when set, signs the EFI binaries put on the ESP (systemd-boot, the UKI) for Secure
	// Boot with the user's key (package secureboot).
	Sign *SignOptions
	// Checksum computes each output's sha256 (OutputResult.SHA256): as it is written, on another
	// core, except for the first output when it is the disk itself (a raw, or a qcow2 written in
	// place), whose first bytes are the last written — that one is read back after the build
	// (BENCHMARKS.md, issue 17: 0.4 s for a 660 MB qcow2, 0.75 s for a 1 GiB raw). Off, the
	// outputs are the same bytes and OutputResult.SHA256 is empty.
	Checksum bool
}

// FirstBootOptions switch off first-boot preparations (firstboot.Options).
type FirstBootOptions struct {
	Keep   []string // operation names (firstboot.Operations) or "all"
	NoGrow bool
}

// Event is a progress report. Total is 0 when unknown.
type Event struct {
	Stage string // "resolve", "rootfs", "esp", "write"
	Item  string // e.g. the output path
	Done  int64
	Total int64
}

// Result is what a build made, documented for --json.
type Result struct {
	Image       string            `json:"image"`        // the source as given
	ImageDigest string            `json:"image_digest"` // manifest digest
	Outputs     []OutputResult    `json:"outputs"`
	VirtualSize int64             `json:"virtual_size"` // disk size in bytes
	DiskGUID    string            `json:"disk_guid"`
	Partitions  []PartitionResult `json:"partitions"`
	Kernel      string            `json:"kernel"`           // path in the image
	Initrd      string            `json:"initrd,omitempty"` // path in the image
	KernelVer   string            `json:"kernel_version"`
	Cmdline     string            `json:"cmdline"`
	Loader      string            `json:"loader"` // "systemd-boot", "uki", "shim", "grub", "grub+systemd-boot", …
	Boot        BootResult        `json:"boot"`
	Epoch       int64             `json:"source_date_epoch"`
	RootFS      RootFSResult      `json:"rootfs"`
	Customize   *CustomizeResult  `json:"customize,omitempty"`  // when Plan.Customize is set
	FirstBoot   *firstboot.Result `json:"first_boot,omitempty"` // what was prepared for the first boot
	Verity      *VerityResult     `json:"verity,omitempty"`     // the root's dm-verity hash tree (Plan.Verity)
	Signed      []SignedResult    `json:"signed,omitempty"`     // the EFI binaries signed (Plan.Sign)
	Warnings    []string          `json:"warnings,omitempty"`   // what the build changed or could not do, for a person to read
}

// OutputResult describes one written file.
type OutputResult struct {
	Path   string `json:"output"`
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`            // file size (apparent)
	SHA256 string `json:"sha256,omitempty"` // with Plan.Checksum
}

// PartitionResult describes one partition.
type PartitionResult struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Type   string `json:"type_guid"`
	GUID   string `json:"guid"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	// Of an extra partition: its mount point, filesystem ("ext4", "swap", "none") and ext4 UUID.
	Mount  string `json:"mount,omitempty"`
	FS     string `json:"fs,omitempty"`
	FSUUID string `json:"fs_uuid,omitempty"`
}

// CustomizeResult describes the generated customisation layer.
type CustomizeResult struct {
	Digest string         `json:"digest"` // "sha256:…" of the uncompressed layer tar
	Bytes  int64          `json:"bytes"`
	Ops    []customize.Op `json:"ops"`
}

// RootFSResult summarises the root filesystem.
type RootFSResult struct {
	Type      string `json:"type"`
	UUID      string `json:"uuid"`
	Size      int64  `json:"size"`
	Files     int64  `json:"files"`
	Dirs      int64  `json:"dirs"`
	DataBytes int64  `json:"data_bytes"`
}

func (p *Plan) progress(e Event) {
	if p.Progress != nil {
		p.Progress(e)
	}
}

// Run builds the plan's outputs. On error no output path is created or changed.
func Run(ctx context.Context, p Plan) (Result, error) {
	b, err := planBuild(p)
	if err != nil {
		return Result{}, fmt.Errorf("build: %w", err)
	}
	if err := b.resolve(ctx); err != nil {
		return b.res, fmt.Errorf("build: %w", err)
	}
	b.deriveIDs()
	scratch, err := diskfmt.CreateOutput(b.scratchFor)
	if err != nil {
		return b.res, fmt.Errorf("build: %w", err)
	}
	defer scratch.Abort()
	var disk iox.DiskFile = scratch.File
	var wb *diskfmt.WritebackFile
	if b.scratchIsOutput() {
		// The disk is the first output: its bytes go to storage while the layers stream.
		wb = scratch.Writeback()
		defer wb.Stop()
		disk = wb
		if diskfmt.SinkWrites(b.formats[0]) {
			b.sink = diskfmt.NewQcow2Sink(wb)
			disk = b.sink
		}
	}
	if b.mirrors, err = b.openMirrors(); err != nil {
		return b.res, fmt.Errorf("build: %w", err)
	}
	defer closeMirrors(b.mirrors)
	if t := (&teeDisk{disk: disk}); len(b.mirrors) > 0 {
		for _, m := range b.mirrors {
			t.mirrors = append(t.mirrors, m.wb)
		}
		disk = t
	}
	build := b.buildRoot
	if p.readOnly() {
		build = b.buildReadOnlyRoot
	}
	if err := build(ctx, disk); err != nil {
		return b.res, err // sizeHint or a step's error, "build: " included
	}
	if wb != nil {
		wb.Flush() // the rest of the root goes to storage while the ESP is written
	}
	if err := b.boot(ctx, disk); err != nil {
		return b.res, fmt.Errorf("build: %w", err)
	}
	if err := b.writeOutputs(ctx, scratch); err != nil {
		return b.res, fmt.Errorf("build: %w", err)
	}
	return b.res, nil
}

// build is one Run's state, filled step by step.
type build struct {
	p          Plan
	formats    []diskfmt.Format   // one per p.Outputs
	scratchFor string             // the scratch disk is this output's temporary file, or beside it
	sink       *diskfmt.Qcow2Sink // the scratch disk as the first output, a qcow2 written in place
	mirrors    map[int]*mirror    // by output index: outputs written as the disk is (mirror.go)
	espSize    int64
	platform   v1.Platform
	arch       bootloader.Arch // from the platform; the image config must agree

	digest       string
	epoch        int64
	ls           []layers.Layer
	customDigest string // the generated layer's digest; "" without Plan.Customize

	seed                        []byte
	diskGUID, espGUID, rootGUID string
	fsUUID, hashSeed            [16]byte
	// partSeed is the seed of the extra partitions' identifiers (derivePartitions); the seed
	// when there are none.
	partSeed []byte
	parts    []*extraPart

	fsw    *ext4.Writer
	layout partition.Layout
	res    Result

	// A read-only root (readonly.go): its /var partition, where the erofs root is on the disk.
	varPart       *extraPart
	roDisk        iox.DiskFile
	roOff, roSize int64
	signer        *signer
}

// planBuild checks the plan and picks each output's format: nothing is read or written yet.
func planBuild(p Plan) (*build, error) {
	if len(p.Outputs) == 0 {
		return nil, errors.New("no output")
	}
	b := &build{p: p, formats: make([]diskfmt.Format, len(p.Outputs))}
	for i, o := range p.Outputs {
		if o.Path == "-" {
			if o.Format == "" {
				return nil, errors.New("output - (stdout) needs --format")
			}
			if p.Stdout == nil {
				return nil, errors.New("output - (stdout) but no stdout given")
			}
		} else if b.scratchFor == "" {
			b.scratchFor = o.Path
		}
		f, err := outputFormat(o)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", o.Path, err)
		}
		b.formats[i] = f
	}
	if err := p.CheckNumbers(); err != nil {
		return nil, err
	}
	if err := checkPartitions(p.Partitions); err != nil {
		return nil, err
	}
	if err := firstboot.CheckKeep(p.FirstBoot.Keep); err != nil {
		return nil, err
	}
	if err := checkReadOnly(&p); err != nil {
		return nil, err
	}
	for i, f := range b.formats {
		if max := diskfmt.MaxSize(f.Name()); max > 0 && p.Size > max {
			return nil, fmt.Errorf("output %s: --size %d MiB is more than %s holds (%d MiB)", p.Outputs[i].Path, p.Size>>20, f.Name(), max>>20)
		}
	}
	b.espSize = p.ESPSize
	if b.espSize == 0 {
		b.espSize = DefaultESPSize
	}
	b.espSize = partition.AlignUp(b.espSize)
	platform := p.Platform
	if platform == "" {
		platform = "linux/amd64"
	}
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, fmt.Errorf("--platform %q: %w", platform, err)
	}
	b.platform = *plat
	if b.arch, err = bootloader.ArchFor(plat.Architecture); err != nil {
		return nil, fmt.Errorf("--platform %s: %w", platform, err)
	}
	if err := p.Boot.ValidateFor(b.arch); err != nil {
		return nil, err
	}
	if b.signer, err = loadSigner(p); err != nil {
		return nil, err
	}
	// The scratch disk: the first output's temporary file when it is a raw or an uncompressed
	// qcow2 (committed as that output), else a scratch file beside the first file output, or in
	// the temporary directory when everything goes to stdout (removed unless committed).
	if b.scratchFor == "" {
		b.scratchFor = filepath.Join(os.TempDir(), "imgfab-scratch.raw")
	}
	return b, nil
}

// outputFormat is the format of one output: --format, else the path's extension; with its
// compression.
func outputFormat(o Output) (diskfmt.Format, error) {
	var f diskfmt.Format
	var err error
	if o.Format != "" {
		f, err = diskfmt.Lookup(o.Format)
	} else {
		f, err = diskfmt.FromPath(o.Path)
	}
	if err == nil && o.Compress != "" {
		f, err = diskfmt.New(f.Name(), diskfmt.Options{Compress: o.Compress})
	}
	return f, err
}

// resolve finds the image, its epoch and its layers (the extra ones on top).
func (b *build) resolve(ctx context.Context) error {
	p := &b.p
	p.progress(Event{Stage: "resolve", Item: p.Source})
	opts := []layers.Option{layers.WithPlatform(b.platform)}
	if p.Insecure {
		opts = append(opts, layers.WithInsecure())
	}
	img, err := layers.Resolve(ctx, p.Source, opts...)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", p.Source, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image digest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	if err := b.checkArch(cfg.Architecture); err != nil {
		return err
	}
	var warns []string
	if p.SourceDateEpoch != nil {
		b.epoch = *p.SourceDateEpoch
	} else if e, w := imageEpoch(cfg.Created.Time); w != "" {
		b.epoch, warns = e, append(warns, w)
	} else {
		b.epoch = e
	}
	b.digest = digest.String()
	b.res = Result{Image: p.Source, ImageDigest: b.digest, Epoch: b.epoch, Warnings: warns}
	if b.ls, err = layers.ImageLayers(ctx, img); err != nil {
		return fmt.Errorf("layers of %s: %w", p.Source, err)
	}
	for _, path := range p.ExtraLayers {
		l, err := layers.ExtraLayer(path, time.Unix(b.epoch, 0))
		if err != nil {
			return fmt.Errorf("--layer %s: %w", path, err)
		}
		b.ls = append(b.ls, l)
	}
	if p.Customize != nil || needsFstab(p.Partitions) {
		return b.customize(ctx)
	}
	return nil
}

// deriveIDs derives every identifier from the inputs.
func (b *build) deriveIDs() {
	b.seed = buildSeed(b.digest, b.p, b.espSize, b.epoch, b.customDigest)
	b.diskGUID = partition.DeriveGUID(b.seed, "disk")
	b.espGUID = partition.DeriveGUID(b.seed, "esp")
	b.rootGUID = partition.DeriveGUID(b.seed, "root")
	b.fsUUID = partition.DeriveUUID(b.seed, "rootfs-uuid")
	b.hashSeed = partition.DeriveUUID(b.seed, "rootfs-hash-seed")
	if b.partSeed == nil {
		b.partSeed = b.seed // no fstab lines: nothing depends on the partitions' identifiers
	}
	b.derivePartitions()
}

// buildRoot streams the layers into the root filesystem on the scratch disk f and lays out the
// partitions around it. Its errors carry "build: " (sizeHint adds what to do about a full disk).
func (b *build) buildRoot(ctx context.Context, f iox.DiskFile) error {
	p := &b.p
	rootOff := partition.Head + b.espSize + b.extrasSize()
	var rootSize int64
	if p.Size != 0 {
		specs := append(append([]partition.Spec{{Name: "esp", Size: b.espSize}}, b.extraSpecs()...), partition.Spec{Name: "root"})
		l, err := partition.Plan(p.Size, b.diskGUID, specs)
		if err != nil {
			return fmt.Errorf("build: --size %d MiB: %w", p.Size/partition.MiB, err)
		}
		rootSize = l.Partitions[len(l.Partitions)-1].Size
	}
	fsw, err := ext4.NewWriter(region{f, rootOff}, ext4.Options{
		Size: rootSize, UUID: b.fsUUID, HashSeed: b.hashSeed, Time: b.epoch, Label: "root", NoJournal: p.NoJournal,
	})
	if err != nil {
		return fmt.Errorf("build: root filesystem: %w", err)
	}
	if err := b.openExtras(f); err != nil {
		return err
	}
	if err := b.fill(ctx, f, fsw, b.parts, "", func(err error) error { return sizeHint(err, p.Size, rootSize) }); err != nil {
		return err
	}
	if rootSize == 0 {
		rootSize = partition.AlignUp(fsw.Size())
	}
	specs := append([]partition.Spec{{Name: "esp", Type: partition.TypeESP, GUID: b.espGUID, Size: b.espSize}}, b.extraSpecs()...)
	rootType, rootName, _ := partition.RootType(b.arch.Name)
	b.layout, err = partition.Plan(p.Size, b.diskGUID, append(specs,
		partition.Spec{Name: rootName, Type: rootType, GUID: b.rootGUID, Size: rootSize}))
	if err != nil {
		return fmt.Errorf("build: partition layout: %w", err)
	}
	if err := f.Truncate(b.layout.Size); err != nil {
		return fmt.Errorf("build: sizing disk to %d MiB: %w", b.layout.Size/partition.MiB, err)
	}
	st := fsw.Stats()
	b.fsw = fsw
	b.res.RootFS = RootFSResult{Type: "ext4", UUID: uuidString(b.fsUUID), Size: fsw.Size(),
		Files: int64(st.Files), Dirs: int64(st.Dirs), DataBytes: st.DataBytes}
	return nil
}

// fill streams the layers through the first-boot preparation into root and the ext4 partitions
// (parts; varFSUUID names a read-only disk's /var in fstab) and closes them all; hint says what to
// do about a root that ran out of room.
func (b *build) fill(ctx context.Context, f iox.DiskFile, root partWriter, parts []*extraPart, varFSUUID string, hint func(error) error) error {
	r := newRouter(root, parts, b.epoch)
	prep, err := b.preparer(varFSUUID)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	add := func(h *tar.Header, body io.Reader) error { return prep.Entry(h, body, r.add) }
	if err := streamTree(ctx, &b.p, b.ls, add); err != nil {
		return hint(err)
	}
	if err := b.finishFirstBoot(prep, r.add); err != nil {
		return hint(err)
	}
	if err := r.finish(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := b.closeExtras(f); err != nil {
		return err
	}
	if err := root.Close(); err != nil {
		return hint(fmt.Errorf("build: root filesystem: %w", err))
	}
	return nil
}

// boot puts the kernel, initrd and loaders on the ESP, then the partition table and the BIOS
// loader.
func (b *build) boot(ctx context.Context, f iox.DiskFile) error {
	var tree fs.FS
	var err error
	if b.p.readOnly() {
		tree, err = b.readOnlyTree()
	} else {
		tree, err = b.fsw.FS()
	}
	if err != nil {
		return fmt.Errorf("reading back the root filesystem: %w", err)
	}
	k, err := rootfs.FindKernel(tree)
	if err != nil {
		return err
	}
	b.p.progress(Event{Stage: "esp"})
	bres, err := installBoot(ctx, f, &b.layout, bootInput{
		opts: b.p.Boot, tree: tree, kernel: k, cmdline: b.p.Cmdline, seed: b.seed, rootGUID: b.rootGUID,
		epoch: time.Unix(b.epoch, 0), mbrSeed: b.partSeed, rootNum: 2 + len(b.parts), arch: b.arch,
		rootRef: b.rootRef, signer: b.signer,
	})
	if err != nil {
		return err
	}
	res := &b.res
	res.Boot = bres.BootResult
	res.Signed = bres.signed
	res.Kernel, res.Initrd, res.KernelVer, res.Cmdline, res.Loader = "/"+k.Linux, "", k.Version, bres.cmdline, bres.loader
	if k.Initrd != "" {
		res.Initrd = "/" + k.Initrd
	}
	res.VirtualSize, res.DiskGUID = b.layout.Size, b.layout.GUID
	for i, part := range b.layout.Partitions {
		res.Partitions = append(res.Partitions, PartitionResult{Number: i + 1, Name: part.Name, Type: part.Type,
			GUID: part.GUID, Offset: part.Offset, Size: part.Size})
	}
	b.fillPartitionResults()
	return nil
}

// writeOutputs writes every output at once, each in a goroutine of its own (as many at a time as
// there are cores, so one output's compressor runs beside another's), each hashed as it is
// written when the plan asks for sums. The scratch disk, when it is the first output, is hashed
// while the kernel writes it back; mirrored outputs (mirror.go), already written, are finished
// (the VHD's footer) and hashed from their file. Outputs are committed only once all of them are
// written, so a failed output leaves none of the others behind.
func (b *build) writeOutputs(ctx context.Context, scratch *diskfmt.Output) error {
	p := &b.p
	var disk diskfmt.Disk = b.sink
	if b.sink != nil {
		if _, err := b.sink.Finish(); err != nil {
			return fmt.Errorf("writing %s: %w", scratch.Path(), err)
		}
	} else {
		var err error
		if disk, err = diskfmt.OpenFile(scratch.File); err != nil {
			return err
		}
	}
	commitScratch := b.scratchIsOutput()
	ctx = diskfmt.WithIdentity(ctx, diskfmt.Identity{Seed: b.seed, Time: time.Unix(b.epoch, 0).UTC()})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	progress := func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		p.progress(e)
	}
	w := outputWriter{disk: disk, progress: progress, hash: p.Checksum}
	outs := make([]*diskfmt.Output, len(p.Outputs))
	defer func() {
		for _, o := range outs {
			if o != nil {
				o.Abort() // nothing after Commit
			}
		}
	}()
	sums := make([]diskfmt.Sum, len(p.Outputs))
	errs := make([]error, len(p.Outputs))
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, o := range p.Outputs {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			switch {
			case i == 0 && commitScratch:
				sums[i], errs[i] = w.scratch(ctx, scratch)
			case b.mirrors[i] != nil:
				outs[i], sums[i], errs[i] = w.mirror(ctx, b.mirrors[i], b.formats[i])
			case o.Path == "-":
				sums[i], errs[i] = w.stdout(ctx, p.Stdout, b.formats[i])
			default:
				outs[i], sums[i], errs[i] = w.file(ctx, o.Path, b.formats[i])
			}
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return err
	}
	for _, o := range outs {
		if o != nil {
			if err := o.Commit(); err != nil {
				return err
			}
		}
	}
	if commitScratch {
		if err := scratch.Commit(); err != nil {
			return err
		}
	}
	for i, o := range p.Outputs {
		b.res.Outputs = append(b.res.Outputs, OutputResult{Path: o.Path, Format: b.formats[i].Name(), Bytes: sums[i].Bytes, SHA256: sums[i].SHA256})
	}
	return nil
}

// scratchIsOutput reports whether the scratch disk is the first output, committed as it is: a raw,
// or an uncompressed qcow2 written in place through a diskfmt.Qcow2Sink (issue 17: the disk's
// bytes are written once, while the layers stream, not copied from a scratch raw afterwards).
func (b *build) scratchIsOutput() bool {
	f := b.formats[0]
	return b.p.Outputs[0].Path == b.scratchFor && (f.Name() == "raw" || diskfmt.SinkWrites(f))
}

// firstError is the first error of errs that is not a cancellation caused by another.
func firstError(errs []error) error {
	var cancelled error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled):
			if cancelled == nil {
				cancelled = err
			}
		default:
			return err
		}
	}
	return cancelled
}

// outputWriter writes one build's outputs from its finished disk, hashing them when hash is set.
type outputWriter struct {
	disk     diskfmt.Disk
	progress func(Event)
	hash     bool
}

func (w outputWriter) withProgress(ctx context.Context, item string) context.Context {
	return diskfmt.WithProgress(ctx, func(done, total int64) {
		w.progress(Event{Stage: "write", Item: item, Done: done, Total: total})
	})
}

// scratch hashes the scratch disk that becomes the first output (a raw, or a finished qcow2
// sink) while its fsync runs; unhashed, it syncs and measures it, beside the other outputs.
func (w outputWriter) scratch(ctx context.Context, scratch *diskfmt.Output) (diskfmt.Sum, error) {
	if !w.hash {
		if err := scratch.Sync(); err != nil {
			return diskfmt.Sum{}, fmt.Errorf("writing %s: fsync: %w", scratch.Path(), err)
		}
		fi, err := scratch.Stat()
		if err != nil {
			return diskfmt.Sum{}, fmt.Errorf("writing %s: %w", scratch.Path(), err)
		}
		return diskfmt.Sum{Bytes: fi.Size()}, nil
	}
	synced := make(chan error, 1)
	go func() { synced <- scratch.Sync() }()
	sum, err := diskfmt.FileSum(ctx, scratch.File)
	if serr := <-synced; err == nil && serr != nil {
		err = fmt.Errorf("writing %s: fsync: %w", scratch.Path(), serr)
	}
	if err != nil {
		return sum, fmt.Errorf("hashing %s: %w", scratch.Path(), err)
	}
	return sum, nil
}

// mirror completes an output written as the disk was built (mirror.go), syncs it and, when
// asked to, hashes it from its start.
func (w outputWriter) mirror(ctx context.Context, m *mirror, f diskfmt.Format) (*diskfmt.Output, diskfmt.Sum, error) {
	path := m.out.Path()
	m.wb.Stop()
	if err := diskfmt.FinishMirror(ctx, m.out, f, w.disk); err != nil {
		return m.out, diskfmt.Sum{}, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := m.out.Sync(); err != nil {
		return m.out, diskfmt.Sum{}, fmt.Errorf("writing %s: fsync: %w", path, err)
	}
	if w.hash {
		sum, err := diskfmt.FileSum(ctx, m.out.File)
		if err != nil {
			return m.out, sum, fmt.Errorf("hashing %s: %w", path, err)
		}
		return m.out, sum, nil
	}
	fi, err := m.out.Stat()
	if err != nil {
		return m.out, diskfmt.Sum{}, fmt.Errorf("writing %s: %w", path, err)
	}
	w.progress(Event{Stage: "write", Item: path, Done: fi.Size(), Total: fi.Size()})
	return m.out, diskfmt.Sum{Bytes: fi.Size()}, nil
}

// stdout writes the disk in format f to out, hashing what it writes when asked to.
func (w outputWriter) stdout(ctx context.Context, out io.Writer, f diskfmt.Format) (diskfmt.Sum, error) {
	h := sha256.New()
	cw := &iox.CountWriter{W: out}
	if w.hash {
		cw.W = io.MultiWriter(out, h)
	}
	if err := f.Write(w.withProgress(ctx, "-"), cw, w.disk); err != nil {
		return diskfmt.Sum{}, fmt.Errorf("writing %s to stdout: %w", f.Name(), err)
	}
	if !w.hash {
		return diskfmt.Sum{Bytes: cw.N}, nil
	}
	return diskfmt.Sum{SHA256: fmt.Sprintf("%x", h.Sum(nil)), Bytes: cw.N}, nil
}

// file writes the disk in format f to an uncommitted output for path, hashed as it is written
// and synced to storage.
func (w outputWriter) file(ctx context.Context, path string, f diskfmt.Format) (*diskfmt.Output, diskfmt.Sum, error) {
	out, err := diskfmt.CreateOutput(path)
	if err != nil {
		return nil, diskfmt.Sum{}, err
	}
	sum, err := diskfmt.WriteOutput(w.withProgress(ctx, path), out, f, w.disk, w.hash)
	if err == nil {
		if err = out.Sync(); err != nil {
			err = fmt.Errorf("writing %s: fsync: %w", path, err)
		}
	}
	return out, sum, err
}

// streamTree flattens the layers and adds every entry through add (router.add: to the root
// filesystem or an extra partition's).
func streamTree(ctx context.Context, p *Plan, ls []layers.Layer, add func(*tar.Header, io.Reader) error) error {
	rc := layers.Flatten(ctx, ls)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var done int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("build: reading layers: %w", err)
		}
		if err := add(hdr, tr); err != nil {
			where := "root filesystem"
			if fe, ok := err.(*fsError); ok {
				where, err = fe.fs, fe.err
			}
			if l := hdr.PAXRecords[layers.LayerPAXKey]; l != "" {
				return fmt.Errorf("build: %s: layer %s: entry %q: %w", where, l, hdr.Name, err)
			}
			return fmt.Errorf("build: %s: entry %q: %w", where, hdr.Name, err)
		}
		done += hdr.Size
		p.progress(Event{Stage: "rootfs", Item: hdr.Name, Done: done})
	}
}

// buildSeed hashes everything that shapes the disk: the image, the extra layers, the options.
// A customisation layer's digest is added only when there is one, so that builds without it keep
// their bytes.
func buildSeed(digest string, p Plan, espSize, epoch int64, customDigest string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "imgfab-seed-v1\x00%s\x00", digest)
	seedLayers := p.ExtraLayers
	if p.SeedLayers != nil {
		seedLayers = p.SeedLayers
	}
	for _, l := range seedLayers {
		fmt.Fprintf(h, "layer\x00%s\x00", l)
	}
	var b [8]byte
	for _, n := range []int64{p.Size, espSize, epoch} {
		binary.LittleEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	fmt.Fprintf(h, "cmdline\x00%s\x00journal\x00%v", p.Cmdline, !p.NoJournal)
	fmt.Fprintf(h, "\x00boot\x00%s\x00%s\x00%v\x00%s", p.Boot.Mode, p.Boot.Table, p.Boot.UKI, p.Boot.Chain)
	keep := slices.Clone(p.FirstBoot.Keep)
	slices.Sort(keep)
	fmt.Fprintf(h, "\x00firstboot\x00%v\x00%s", !p.FirstBoot.NoGrow, strings.Join(slices.Compact(keep), ","))
	if customDigest != "" {
		fmt.Fprintf(h, "\x00customize\x00%s", customDigest)
	}
	// The read-only root and verity only when asked for, for the same reason.
	if p.RootFS == "erofs" {
		fmt.Fprintf(h, "\x00rootfs\x00erofs\x00verity\x00%v", p.Verity)
	}
	// Extra partitions only when there are some, for the same reason.
	for _, x := range p.Partitions {
		fmt.Fprintf(h, "\x00partition\x00%s\x00%d\x00%s\x00%s\x00%s", x.Mount, x.Size, x.FS, x.Label, x.Type)
	}
	return h.Sum(nil)
}

func uuidString(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// region is a window of the disk file at a fixed offset, for writing and reading back.
type region struct {
	f   iox.DiskFile
	off int64
}

func (r region) WriteAt(p []byte, off int64) (int, error) { return r.f.WriteAt(p, r.off+off) }
func (r region) ReadAt(p []byte, off int64) (int, error)  { return r.f.ReadAt(p, r.off+off) }

// sizeHint says which option to change when the root filesystem ran out of room.
func sizeHint(err error, diskSize, rootSize int64) error {
	if !errors.Is(err, ext4.ErrFull) || diskSize == 0 {
		return err
	}
	return fmt.Errorf("%w\n--size %d MiB is too small for this image: it leaves %d MiB for the root partition; raise --size, or leave it out to size the disk from the content",
		err, diskSize/partition.MiB, rootSize/partition.MiB)
}
