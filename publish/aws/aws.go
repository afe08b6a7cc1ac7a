package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	backoff "github.com/imgfab/imgfab/internal/retry"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/imgfab/imgfab/publish"
)

// EBSBlockSize is the EBS direct APIs' block size: every PutSnapshotBlock carries exactly this many
// bytes, at index offset / EBSBlockSize.
const EBSBlockSize = 512 << 10

// Target publishes an Artifact as an AMI. With Via "ebs" (the default) it writes a snapshot through
// the EBS direct APIs (StartSnapshot, PutSnapshotBlock for each block that is not all zero,
// CompleteSnapshot), waits for it to be completed and registers the AMI. With Via "s3" it uploads
// the disk to S3 (multipart, resumable), imports it with ImportSnapshot (needs the vmimport role)
// and registers the AMI the same way.
//
// Credentials and region come from the SDK's default chain (environment, shared config, instance
// metadata) unless Config is set. A push is idempotent: an AMI of the same name (owner self) is
// returned as it is (Result.Existing), and a completed snapshot tagged with the disk's content hash
// (imgfab:sha256) is reused instead of uploading again.
type Target struct {
	ImageName string            // AMI name (required)
	Region    string            // overrides the chain's region
	Via       string            // "ebs" (default) or "s3"
	Bucket    string            // S3 bucket (Via "s3")
	TPM       bool              // TpmSupport v2.0 (needs a UEFI boot mode)
	IMDSv2    bool              // ImdsSupport v2.0
	BootMode  string            // "auto" or "" (from Artifact.BootModes), "uefi", "legacy-bios", "uefi-preferred"
	Tags      map[string]string // added to the snapshot and the AMI
	// VolumeSizeGiB is the snapshot's (and the root volume's) size; 0 means the disk's virtual size
	// rounded up to a whole GiB. It may not be smaller than that.
	VolumeSizeGiB int64
	Workers       int           // parallel block or part uploads; default 32 (EBS), 8 (S3)
	MaxAttempts   int           // attempts per request, default 10
	MaxBackoff    time.Duration // longest wait between two attempts, default 20 s
	PollInterval  time.Duration // between status polls (snapshot, import task); default 5 s
	PartSize      int64         // S3 part size, default 64 MiB (raised to keep within 10,000 parts)

	// Endpoint overrides (tests, private endpoints); plain http is allowed.
	EndpointEBS, EndpointEC2, EndpointS3 string
	// Config replaces the default chain's configuration when set.
	Config *aws.Config
}

var _ publish.Target = (*Target)(nil)

// Name is "aws".
func (t *Target) Name() string { return "aws" }

const targetName = "aws"

// run carries one push's clients and facts.
type run struct {
	t       *Target
	cfg     aws.Config
	ec2     *ec2.Client
	secrets []string
	p       publish.Progress
	hash    string // content hash, hex
	token   string // idempotency token from hash and name
	blocks  []blockSum
	nblocks int64 // blocks in the guest (ceil(size / EBSBlockSize))
	size    int64
	details map[string]string
}

// blockSum is one block that is not all zero and its SHA-256.
type blockSum struct {
	index int32
	sum   [32]byte
}

func (t *Target) defaults() {
	if t.Via == "" {
		t.Via = "ebs"
	}
	if t.MaxAttempts <= 0 {
		t.MaxAttempts = 10
	}
	if t.MaxBackoff <= 0 {
		t.MaxBackoff = 20 * time.Second
	}
	if t.PollInterval <= 0 {
		t.PollInterval = 5 * time.Second
	}
	if t.Workers <= 0 {
		if t.Via == "s3" {
			t.Workers = 8
		} else {
			t.Workers = 32
		}
	}
}

// Push uploads the artifact and registers the AMI.
func (t *Target) Push(ctx context.Context, a publish.Artifact, p publish.Progress) (publish.Result, error) {
	tc := *t
	tc.defaults()
	bootMode, arch, volGiB, err := tc.check(a)
	if err != nil {
		return publish.Result{}, err
	}
	size := a.Image.Size()
	r := &run{t: &tc, p: p, size: size, details: map[string]string{"via": tc.Via, "boot_mode": bootMode}}
	if err := r.init(ctx); err != nil {
		return publish.Result{}, err
	}
	res := publish.Result{Target: targetName, Name: tc.ImageName, Region: r.cfg.Region}

	// 1. An AMI of this name already there?
	if img, err := r.findImage(ctx); err != nil {
		return publish.Result{}, err
	} else if img != nil {
		if got := string(img.Architecture); got != "" && got != arch {
			return publish.Result{}, fmt.Errorf("aws: AMI %s named %s is %s, this disk is %s: give another image name",
				aws.ToString(img.ImageId), tc.ImageName, got, arch)
		}
		res.ID = aws.ToString(img.ImageId)
		res.Existing = true
		for _, m := range img.BlockDeviceMappings {
			if m.Ebs != nil && m.Ebs.SnapshotId != nil {
				res.Snapshot = *m.Ebs.SnapshotId
			}
		}
		res.Details = r.details
		return res, nil
	}

	// 2. The disk's content hash: which blocks hold data, and their digests.
	p.Emit(publish.Event{Target: targetName, Step: "scan", Total: size})
	if err := r.scan(ctx, a); err != nil {
		return publish.Result{}, err
	}

	// 3. A completed snapshot of the same content, or a new one.
	snap, err := r.snapshot(ctx, a, volGiB)
	if err != nil {
		return publish.Result{}, err
	}
	res.Snapshot = snap

	// 4. The AMI.
	p.Emit(publish.Event{Target: targetName, Step: "register"})
	id, existing, err := r.register(ctx, snap, arch, bootMode, volGiB)
	if err != nil {
		return publish.Result{}, err
	}
	res.ID, res.Existing, res.Details = id, existing, r.details
	return res, nil
}

// check validates the target (its defaults applied) and the artifact, and returns the AMI's boot
// mode and architecture and the volume size in GiB.
func (t *Target) check(a publish.Artifact) (bootMode, arch string, volGiB int64, err error) {
	if t.ImageName == "" {
		return "", "", 0, fmt.Errorf("aws: no image name")
	}
	if t.Via != "ebs" && t.Via != "s3" {
		return "", "", 0, fmt.Errorf("aws: via %q: want ebs or s3", t.Via)
	}
	if t.Via == "s3" && t.Bucket == "" {
		return "", "", 0, fmt.Errorf("aws: via s3 needs a bucket")
	}
	if a.Image == nil {
		return "", "", 0, fmt.Errorf("aws: artifact has no image")
	}
	goarch, err := a.Architecture()
	if err != nil {
		return "", "", 0, fmt.Errorf("aws: %w", err)
	}
	if bootMode, err = t.bootMode(a, goarch); err != nil {
		return "", "", 0, err
	}
	arch = ec2Arch(goarch)
	size := a.Image.Size()
	minGiB := (size + 1<<30 - 1) >> 30
	volGiB = t.VolumeSizeGiB
	if volGiB == 0 {
		volGiB = minGiB
	}
	if volGiB < minGiB {
		return "", "", 0, fmt.Errorf("aws: volume size %d GiB is smaller than the disk (%d bytes, %d GiB)", volGiB, size, minGiB)
	}
	return bootMode, arch, volGiB, nil
}

// snapshot returns a completed snapshot of the disk: one of the same content (tagged with the
// user's tags), else a new one written through the EBS direct APIs or imported from S3.
func (r *run) snapshot(ctx context.Context, a publish.Artifact, volGiB int64) (string, error) {
	snap, err := r.findSnapshot(ctx)
	if err != nil {
		return "", err
	}
	if snap != "" {
		r.details["snapshot_reused"] = "true"
		if err := r.tagSnapshot(ctx, snap); err != nil {
			return "", err
		}
	} else if r.t.Via == "ebs" {
		if snap, err = r.uploadEBS(ctx, a, volGiB); err != nil {
			return "", err
		}
	} else {
		if snap, err = r.viaS3(ctx, a); err != nil {
			return "", err
		}
	}
	if err := r.waitSnapshot(ctx, snap); err != nil {
		return "", err
	}
	return snap, nil
}

// ec2Arch is the RegisterImage Architecture of a publish architecture (AMD64 or ARM64).
func ec2Arch(arch string) string {
	if arch == publish.ARM64 {
		return string(ec2types.ArchitectureValuesArm64)
	}
	return string(ec2types.ArchitectureValuesX8664)
}

// bootMode chooses the AMI boot mode from the flag or what the disk boots. An arm64 AMI is always
// uefi: Graviton instances boot UEFI only.
func (t *Target) bootMode(a publish.Artifact, arch string) (string, error) {
	mode := t.BootMode
	if arch == publish.ARM64 {
		switch mode {
		case "", "auto", "uefi":
		default:
			return "", fmt.Errorf("aws: boot mode %q with architecture arm64: Graviton instances boot UEFI only (give uefi or auto)", mode)
		}
		if len(a.BootModes) > 0 && !a.Boots("uefi") {
			return "", fmt.Errorf("aws: architecture arm64 boots UEFI only, but the disk boots %v", a.BootModes)
		}
		return "uefi", nil
	}
	switch mode {
	case "", "auto":
		switch uefi, bios := a.Boots("uefi"), a.Boots("bios"); {
		case uefi && bios:
			mode = "uefi-preferred"
		case uefi:
			mode = "uefi"
		case bios:
			mode = "legacy-bios"
		default:
			return "", fmt.Errorf("aws: the disk boots neither UEFI nor BIOS (boot modes %v): give a boot mode", a.BootModes)
		}
	case "uefi", "legacy-bios", "uefi-preferred":
	default:
		return "", fmt.Errorf("aws: boot mode %q: want auto, uefi, legacy-bios or uefi-preferred", mode)
	}
	if t.TPM && mode == "legacy-bios" {
		return "", fmt.Errorf("aws: TPM v2.0 needs a UEFI boot mode, not %s", mode)
	}
	return mode, nil
}

// credentialHint says what to set when the SDK's default chain finds no credentials (its own
// message names only the last place it looked, the EC2 instance metadata service).
const credentialHint = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), " +
	"or AWS_PROFILE with ~/.aws/credentials or ~/.aws/config (aws configure, aws sso login), " +
	"or run on an EC2 instance with an instance role"

func (r *run) init(ctx context.Context) error {
	t := r.t
	if t.Config != nil {
		r.cfg = t.Config.Copy()
	} else {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return publish.NewStepError(targetName, "loading configuration", err)
		}
		r.cfg = cfg
	}
	if t.Region != "" {
		r.cfg.Region = t.Region
	}
	if r.cfg.Region == "" {
		return fmt.Errorf("aws: no region: give one or set AWS_REGION")
	}
	if r.cfg.Credentials == nil {
		return fmt.Errorf("aws: no credentials: %s", credentialHint)
	}
	creds, err := r.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("aws: credentials: none found: %s (the SDK said: %s)", credentialHint, publish.Redact(err.Error()))
	}
	r.secrets = []string{creds.SecretAccessKey, creds.SessionToken}
	workers := t.Workers
	r.cfg.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = workers + 4
	})
	r.cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = t.MaxAttempts
			o.MaxBackoff = t.MaxBackoff
			o.RateLimiter = ratelimit.None
		})
	}
	r.ec2 = ec2.NewFromConfig(r.cfg, func(o *ec2.Options) {
		if t.EndpointEC2 != "" {
			o.BaseEndpoint = aws.String(t.EndpointEC2)
		}
	})
	return nil
}

func (r *run) err(step string, err error) error {
	return publish.NewStepError(targetName, step, err, r.secrets...)
}

// findImage returns this account's AMI named ImageName, if any (failed or deregistered ones do not count).
func (r *run) findImage(ctx context.Context) (*ec2types.Image, error) {
	out, err := r.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{r.t.ImageName}}},
	})
	if err != nil {
		return nil, r.err("looking for image "+r.t.ImageName, err)
	}
	for i, img := range out.Images {
		switch img.State {
		case ec2types.ImageStateFailed, ec2types.ImageStateDeregistered, ec2types.ImageStateError:
			continue
		}
		if aws.ToString(img.Name) == r.t.ImageName {
			return &out.Images[i], nil
		}
	}
	return nil, nil
}

// scan reads every block inside the disk's extents, keeps the ones that are not all zero with
// their SHA-256, and derives the content hash: SHA-256 over "imgfab-blocks-v1", the virtual size
// and each such block's index and digest in index order. Two disks with the same guest bytes have
// the same hash whatever their format.
func (r *run) scan(ctx context.Context, a publish.Artifact) error {
	r.nblocks = (r.size + EBSBlockSize - 1) / EBSBlockSize
	var idx []int32
	last := int64(-1)
	for _, e := range a.Image.Extents() {
		if e.Len <= 0 {
			continue
		}
		for b := e.Off / EBSBlockSize; b*EBSBlockSize < e.End() && b < r.nblocks; b++ {
			if b > last {
				idx = append(idx, int32(b))
				last = b
			}
		}
	}
	sums := make([]blockSum, len(idx))
	nonzero := make([]bool, len(idx))
	var done publish.Counter
	err := publish.Parallel(ctx, r.t.Workers, len(idx), func(ctx context.Context, i int) error {
		buf := blockPool.Get().(*[]byte)
		defer blockPool.Put(buf)
		if err := readBlock(a.Image, r.size, idx[i], *buf); err != nil {
			return err
		}
		done.Add(r.p, EBSBlockSize, publish.Event{Target: targetName, Step: "scan", Total: int64(len(idx)) * EBSBlockSize})
		if isZero(*buf) {
			return nil
		}
		sums[i] = blockSum{index: idx[i], sum: sha256.Sum256(*buf)}
		nonzero[i] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("aws: reading the disk: %w", err)
	}
	r.blocks = r.blocks[:0]
	for i := range sums {
		if nonzero[i] {
			r.blocks = append(r.blocks, sums[i])
		}
	}
	h := sha256.New()
	io.WriteString(h, "imgfab-blocks-v1\n")
	binary.Write(h, binary.BigEndian, r.size)
	for _, b := range r.blocks {
		binary.Write(h, binary.BigEndian, b.index)
		h.Write(b.sum[:])
	}
	r.hash = hex.EncodeToString(h.Sum(nil))
	tok := sha256.Sum256([]byte(r.hash + "\x00" + r.t.ImageName + "\x00" + r.t.Via))
	r.token = hex.EncodeToString(tok[:])[:64]
	r.details["content_sha256"] = r.hash
	r.details["blocks_total"] = strconv.FormatInt(r.nblocks, 10)
	r.details["blocks_data"] = strconv.Itoa(len(r.blocks))
	r.details["blocks_zero"] = strconv.FormatInt(r.nblocks-int64(len(r.blocks)), 10)
	return nil
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, EBSBlockSize); return &b }}

var zeroBlock = make([]byte, EBSBlockSize)

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// readBlock reads block i of the guest into buf, zero-filling past the end of the disk.
func readBlock(d io.ReaderAt, size int64, i int32, buf []byte) error {
	off := int64(i) * EBSBlockSize
	n := int64(len(buf))
	if off+n > size {
		n = size - off
		clear(buf[n:])
	}
	if _, err := d.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return fmt.Errorf("block %d (offset %d): %w", i, off, err)
	}
	return nil
}

// tags are the imgfab tags plus the user's, sorted by key.
func (r *run) tags() [][2]string {
	m := map[string]string{"imgfab:name": r.t.ImageName}
	if r.hash != "" {
		m["imgfab:sha256"] = r.hash
	}
	for k, v := range r.t.Tags {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]string, len(keys))
	for i, k := range keys {
		out[i] = [2]string{k, m[k]}
	}
	return out
}

func (r *run) ec2Tags() []ec2types.Tag {
	var out []ec2types.Tag
	for _, kv := range r.tags() {
		out = append(out, ec2types.Tag{Key: aws.String(kv[0]), Value: aws.String(kv[1])})
	}
	return out
}

// tagSnapshot adds the user's tags to a reused snapshot (--tag goes on the snapshot and the AMI,
// whichever push made the snapshot); its imgfab tags stay those of the push that made it.
func (r *run) tagSnapshot(ctx context.Context, snap string) error {
	if len(r.t.Tags) == 0 {
		return nil
	}
	keys := make([]string, 0, len(r.t.Tags))
	for k := range r.t.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var tags []ec2types.Tag
	for _, k := range keys {
		tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(r.t.Tags[k])})
	}
	if _, err := r.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{snap}, Tags: tags}); err != nil {
		return r.err("tagging the reused snapshot "+snap, err)
	}
	return nil
}

// findSnapshot returns a completed (or pending, then waited for) snapshot of this account tagged
// with the content hash, or "".
func (r *run) findSnapshot(ctx context.Context) (string, error) {
	out, err := r.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []ec2types.Filter{{Name: aws.String("tag:imgfab:sha256"), Values: []string{r.hash}}},
	})
	if err != nil {
		return "", r.err("looking for a snapshot of this disk", err)
	}
	for _, s := range out.Snapshots {
		if s.State == ec2types.SnapshotStateCompleted {
			return aws.ToString(s.SnapshotId), nil
		}
	}
	// A pending snapshot with our tag is a StartSnapshot whose upload was interrupted (never
	// completed; it errors out after its timeout) or is still running elsewhere: upload again.
	// StartSnapshot's client token gives back that same snapshot while AWS remembers the token,
	// and writing a block twice is harmless.
	return "", nil
}

// uploadEBS writes the snapshot with the EBS direct APIs and returns its id.
func (r *run) uploadEBS(ctx context.Context, a publish.Artifact, volGiB int64) (string, error) {
	t := r.t
	client := ebs.NewFromConfig(r.cfg, func(o *ebs.Options) {
		if t.EndpointEBS != "" {
			o.BaseEndpoint = aws.String(t.EndpointEBS)
		}
	})
	snap, err := r.startSnapshot(ctx, client, volGiB)
	if err != nil {
		return "", err
	}
	if err := r.putBlocks(ctx, a, snap); err != nil {
		return "", err
	}
	if err := r.completeSnapshot(ctx, client, snap); err != nil {
		return "", err
	}
	return snap, nil
}

// startSnapshot starts the snapshot (tagged, with the push's client token) and returns its id.
func (r *run) startSnapshot(ctx context.Context, client *ebs.Client, volGiB int64) (string, error) {
	var tags []ebstypes.Tag
	for _, kv := range r.tags() {
		tags = append(tags, ebstypes.Tag{Key: aws.String(kv[0]), Value: aws.String(kv[1])})
	}
	r.p.Emit(publish.Event{Target: targetName, Step: "start snapshot"})
	st, err := client.StartSnapshot(ctx, &ebs.StartSnapshotInput{
		VolumeSize:  aws.Int64(volGiB),
		ClientToken: aws.String(r.token),
		Description: aws.String("imgfab " + r.t.ImageName),
		Tags:        tags,
		Timeout:     aws.Int32(60), // minutes without a put before the snapshot errors out
	})
	if err != nil {
		return "", r.err(fmt.Sprintf("StartSnapshot (%d GiB)", volGiB), err)
	}
	snap := aws.ToString(st.SnapshotId)
	if bs := aws.ToInt32(st.BlockSize); bs != 0 && bs != EBSBlockSize {
		return "", fmt.Errorf("aws: snapshot %s has block size %d, want %d", snap, bs, EBSBlockSize)
	}
	r.details["snapshot_id"] = snap
	return snap, nil
}

// putBlocks puts every block that is not all zero into the snapshot, Workers at a time, each
// read again and checked against the digest the scan took.
func (r *run) putBlocks(ctx context.Context, a publish.Artifact, snap string) error {
	t, p := r.t, r.p
	total := int64(len(r.blocks)) * EBSBlockSize
	zero := r.nblocks - int64(len(r.blocks))
	note := fmt.Sprintf("%d blocks, %d zero blocks skipped", len(r.blocks), zero)
	p.Emit(publish.Event{Target: targetName, Step: "upload", Total: total, Note: note})
	var done publish.Counter
	var retries atomic.Int64
	// Block puts are retried here (with the block index in the error), not by the SDK.
	putClient := ebs.NewFromConfig(r.cfg, func(o *ebs.Options) {
		if t.EndpointEBS != "" {
			o.BaseEndpoint = aws.String(t.EndpointEBS)
		}
		o.Retryer = aws.NopRetryer{}
	})
	err := publish.Parallel(ctx, t.Workers, len(r.blocks), func(ctx context.Context, i int) error {
		b := r.blocks[i]
		buf := blockPool.Get().(*[]byte)
		defer blockPool.Put(buf)
		if err := readBlock(a.Image, r.size, b.index, *buf); err != nil {
			return fmt.Errorf("aws: reading %w", err)
		}
		if sha256.Sum256(*buf) != b.sum {
			return fmt.Errorf("aws: block %d (offset %d) changed since it was read: is the disk being written?", b.index, int64(b.index)*EBSBlockSize)
		}
		sum := base64.StdEncoding.EncodeToString(b.sum[:])
		progress := int32(done.Done() * 100 / max(total, 1))
		attempts, err := r.retry(ctx, func() error {
			_, err := putClient.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
				SnapshotId:        aws.String(snap),
				BlockIndex:        aws.Int32(b.index),
				BlockData:         bytes.NewReader(*buf),
				DataLength:        aws.Int32(EBSBlockSize),
				Checksum:          aws.String(sum),
				ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
				Progress:          aws.Int32(progress),
			})
			return err
		})
		retries.Add(int64(attempts - 1))
		if err != nil {
			return r.err(fmt.Sprintf("PutSnapshotBlock %s block %d (offset %d) after %d attempts", snap, b.index, int64(b.index)*EBSBlockSize, attempts), err)
		}
		done.Add(p, EBSBlockSize, publish.Event{Target: targetName, Step: "upload", Total: total, Note: note})
		return nil
	})
	if err != nil {
		return err
	}
	r.details["blocks_sent"] = strconv.Itoa(len(r.blocks))
	r.details["retries"] = strconv.FormatInt(retries.Load(), 10)
	return nil
}

// completeSnapshot completes the snapshot with its block count and the linear aggregate of the
// blocks' SHA-256 digests.
func (r *run) completeSnapshot(ctx context.Context, client *ebs.Client, snap string) error {
	agg := sha256.New()
	for _, b := range r.blocks {
		agg.Write(b.sum[:])
	}
	r.p.Emit(publish.Event{Target: targetName, Step: "complete snapshot"})
	_, err := client.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
		SnapshotId:                aws.String(snap),
		ChangedBlocksCount:        aws.Int32(int32(len(r.blocks))),
		Checksum:                  aws.String(base64.StdEncoding.EncodeToString(agg.Sum(nil))),
		ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear,
		ChecksumAlgorithm:         ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
	})
	if err != nil {
		return r.err(fmt.Sprintf("CompleteSnapshot %s (%d blocks)", snap, len(r.blocks)), err)
	}
	return nil
}

// retry runs fn until it succeeds, fails with an error that is not worth retrying, or MaxAttempts
// is reached; it returns the attempts made.
func (r *run) retry(ctx context.Context, fn func() error) (int, error) {
	p := backoff.Policy{Attempts: r.t.MaxAttempts, Base: 100 * time.Millisecond, Max: r.t.MaxBackoff, Jitter: true}
	return p.Do(ctx, retryable, fn)
}

// retryable: throttling, 5xx, timeouts and connection errors (no HTTP response at all).
func retryable(err error) bool {
	var ce *smithy.CanceledError
	if errors.As(err, &ce) || errors.Is(err, context.Canceled) {
		return false
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() != 0 {
		code := re.HTTPStatusCode()
		if code >= 500 || code == 429 {
			return true
		}
		var ae smithy.APIError
		if errors.As(err, &ae) {
			switch ae.ErrorCode() {
			case "ThrottlingException", "RequestThrottledException", "Throttling", "SlowDown", "RequestTimeout":
				return true
			}
		}
		return false
	}
	return true // no answer: connection refused, reset or cut
}

// waitSnapshot waits until the snapshot is completed.
func (r *run) waitSnapshot(ctx context.Context, snap string) error {
	r.p.Emit(publish.Event{Target: targetName, Step: "wait", Note: snap})
	for polls := 1; ; polls++ {
		out, err := r.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}})
		if err != nil {
			return r.err("waiting for snapshot "+snap, err)
		}
		if len(out.Snapshots) == 1 {
			s := out.Snapshots[0]
			switch s.State {
			case ec2types.SnapshotStateCompleted:
				return nil
			case ec2types.SnapshotStateError:
				return fmt.Errorf("aws: snapshot %s failed: %s", snap, aws.ToString(s.StateMessage))
			}
			r.p.Emit(publish.Event{Target: targetName, Step: "wait", Note: snap + " " + aws.ToString(s.Progress)})
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("aws: waiting for snapshot %s (%d polls): %w", snap, polls, ctx.Err())
		case <-time.After(r.t.PollInterval):
		}
	}
}

// register creates the AMI; when another push registered the same name meanwhile, that one is returned.
func (r *run) register(ctx context.Context, snap, arch, bootMode string, volGiB int64) (string, bool, error) {
	t := r.t
	in := &ec2.RegisterImageInput{
		Name:               aws.String(t.ImageName),
		Description:        aws.String("imgfab " + t.ImageName),
		Architecture:       ec2types.ArchitectureValues(arch),
		RootDeviceName:     aws.String("/dev/xvda"),
		VirtualizationType: aws.String("hvm"),
		EnaSupport:         aws.Bool(true),
		BootMode:           ec2types.BootModeValues(bootMode),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{
			DeviceName: aws.String("/dev/xvda"),
			Ebs: &ec2types.EbsBlockDevice{
				SnapshotId:          aws.String(snap),
				VolumeType:          ec2types.VolumeTypeGp3,
				VolumeSize:          aws.Int32(int32(volGiB)),
				DeleteOnTermination: aws.Bool(true),
			},
		}},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeImage, Tags: r.ec2Tags()}},
	}
	if t.TPM {
		in.TpmSupport = ec2types.TpmSupportValuesV20
	}
	if t.IMDSv2 {
		in.ImdsSupport = ec2types.ImdsSupportValuesV20
	}
	out, err := r.ec2.RegisterImage(ctx, in)
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidAMIName.Duplicate" {
			if img, ferr := r.findImage(ctx); ferr == nil && img != nil {
				return aws.ToString(img.ImageId), true, nil
			}
		}
		return "", false, r.err(fmt.Sprintf("RegisterImage %s from %s (%s, %s)", t.ImageName, snap, arch, bootMode), err)
	}
	return aws.ToString(out.ImageId), false, nil
}
