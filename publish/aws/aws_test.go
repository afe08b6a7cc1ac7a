package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/aws/awstest"
)

// awsTestBytes is a guest of size bytes with random data in the given 512 KiB blocks (the last
// one may be partial) and zeros elsewhere.
func awsTestBytes(size int64, blocks ...int64) []byte {
	buf := make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	for _, b := range blocks {
		off := b * EBSBlockSize
		end := min(off+EBSBlockSize, size)
		for i := off; i < end; i++ {
			buf[i] = byte(rng.Uint32())
		}
	}
	return buf
}

func awsArtifact(t testing.TB, buf []byte, modes ...string) publish.Artifact {
	t.Helper()
	img, err := diskfmt.OpenReaderAt(bytes.NewReader(buf), int64(len(buf)))
	if err != nil {
		t.Fatal(err)
	}
	return publish.Artifact{Image: img, BootModes: modes, Arch: "x86_64"}
}

func awsTestTarget(f *awstest.Server, name string) *Target {
	cfg := aws.Config{Region: f.Region, Credentials: credentials.NewStaticCredentialsProvider(f.AccessKey, f.SecretKey, "")}
	return &Target{ImageName: name, EndpointEBS: f.URL, EndpointEC2: f.URL, Config: &cfg,
		PollInterval: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Workers: 8}
}

// 11 blocks (the last one partial), data in 4 of them.
const awsTestSize = 10*EBSBlockSize + 1000

var awsTestBlocks = []int64{0, 1, 4, 10}

func TestAWSEBSPush(t *testing.T) {
	f := awstest.New(t)
	buf := awsTestBytes(awsTestSize, awsTestBlocks...)
	a := awsArtifact(t, buf, "uefi")
	tg := awsTestTarget(f, "imgfab-test-1")
	tg.Tags = map[string]string{"team": "os"}
	var last publish.Event
	res, err := tg.Push(context.Background(), a, func(e publish.Event) {
		if e.Step == "upload" {
			last = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Existing || !strings.HasPrefix(res.ID, "ami-") || !strings.HasPrefix(res.Snapshot, "snap-") || res.Region != f.Region {
		t.Fatalf("result %+v", res)
	}
	if d := res.Details; d["blocks_total"] != "11" || d["blocks_sent"] != "4" || d["blocks_zero"] != "7" || d["boot_mode"] != "uefi" {
		t.Errorf("details %v", d)
	}
	if n := f.Calls("PutSnapshotBlock"); n != 4 {
		t.Errorf("%d blocks put, want 4", n)
	}
	if f.ZeroPuts() != 0 {
		t.Errorf("%d zero blocks sent", f.ZeroPuts())
	}
	if last.Done != 4*EBSBlockSize || last.Total != 4*EBSBlockSize || !strings.Contains(last.Note, "7 zero blocks skipped") {
		t.Errorf("last upload event %+v", last)
	}
	if d := f.Compare(res.Snapshot, bytes.NewReader(buf), int64(len(buf))); d != "" {
		t.Fatal(d)
	}
	sn := f.Snapshot(res.Snapshot)
	if sn.VolumeSize != 1 || sn.Tags["imgfab:name"] != "imgfab-test-1" || sn.Tags["imgfab:sha256"] != res.Details["content_sha256"] || sn.Tags["team"] != "os" {
		t.Errorf("snapshot %d GiB, tags %v", sn.VolumeSize, sn.Tags)
	}
	im := f.Image("imgfab-test-1")
	if im == nil {
		t.Fatal("no image registered")
	}
	q := im.Params
	for k, want := range map[string]string{"BootMode": "uefi", "Architecture": "x86_64", "BlockDeviceMapping.1.Ebs.SnapshotId": res.Snapshot,
		"TpmSupport": "", "ImdsSupport": "", "TagSpecification.1.ResourceType": "image"} {
		if q.Get(k) != want {
			t.Errorf("RegisterImage %s = %q, want %q", k, q.Get(k), want)
		}
	}

	// Again: the same AMI, nothing uploaded.
	res2, err := tg.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Existing || res2.ID != res.ID || res2.Snapshot != res.Snapshot {
		t.Errorf("rerun: %+v, first %+v", res2, res)
	}
	if f.Calls("PutSnapshotBlock") != 4 || f.Calls("StartSnapshot") != 1 || f.Images() != 1 {
		t.Errorf("rerun sent %d blocks, %d StartSnapshot, %d images", f.Calls("PutSnapshotBlock"), f.Calls("StartSnapshot"), f.Images())
	}
}

func TestAWSSnapshotReusedForAnotherName(t *testing.T) {
	f := awstest.New(t)
	buf := awsTestBytes(awsTestSize, awsTestBlocks...)
	a := awsArtifact(t, buf, "uefi")
	r1, err := awsTestTarget(f, "one").Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	two := awsTestTarget(f, "two")
	two.Tags = map[string]string{"team": "web", "env": "prod"}
	r2, err := two.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Existing || r2.ID == r1.ID || r2.Snapshot != r1.Snapshot || r2.Details["snapshot_reused"] != "true" {
		t.Errorf("second push %+v", r2)
	}
	// --tag goes on the reused snapshot too; its imgfab tags stay the first push's.
	if sn := f.Snapshot(r2.Snapshot); sn.Tags["team"] != "web" || sn.Tags["env"] != "prod" || sn.Tags["imgfab:name"] != "one" {
		t.Errorf("reused snapshot tags %v, want team=web env=prod imgfab:name=one", sn.Tags)
	}
	if f.Calls("PutSnapshotBlock") != 4 || f.SnapshotCount() != 1 || f.Images() != 2 {
		t.Errorf("%d blocks, %d snapshots, %d images", f.Calls("PutSnapshotBlock"), f.SnapshotCount(), f.Images())
	}
}

func TestAWSBootModes(t *testing.T) {
	buf := awsTestBytes(awsTestSize, 0)
	for _, c := range []struct {
		modes      []string
		flag       string
		tpm, imds  bool
		want, fail string
	}{
		{modes: []string{"uefi"}, want: "uefi"},
		{modes: []string{"uefi", "bios"}, want: "uefi-preferred"},
		{modes: []string{"bios"}, want: "legacy-bios"},
		{modes: []string{"uefi"}, tpm: true, imds: true, want: "uefi"},
		{modes: []string{"uefi", "bios"}, flag: "legacy-bios", want: "legacy-bios"},
		{modes: []string{"bios"}, tpm: true, fail: "TPM v2.0 needs a UEFI boot mode"},
		{modes: nil, fail: "boots neither UEFI nor BIOS"},
		{modes: []string{"uefi"}, flag: "efi", fail: `boot mode "efi"`},
	} {
		f := awstest.New(t)
		tg := awsTestTarget(f, "boot")
		tg.TPM, tg.IMDSv2, tg.BootMode = c.tpm, c.imds, c.flag
		res, err := tg.Push(context.Background(), awsArtifact(t, buf, c.modes...), nil)
		if c.fail != "" {
			if err == nil || !strings.Contains(err.Error(), c.fail) {
				t.Errorf("%v %s: err %v, want %q", c.modes, c.flag, err, c.fail)
			}
			if f.Calls("DescribeImages") != 0 {
				t.Errorf("%v: requests sent before the boot mode was checked", c.modes)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		q := f.Image("boot").Params
		if q.Get("BootMode") != c.want || res.Details["boot_mode"] != c.want {
			t.Errorf("%v %s: BootMode %q, want %q", c.modes, c.flag, q.Get("BootMode"), c.want)
		}
		if tpm := q.Get("TpmSupport") == "v2.0"; tpm != c.tpm {
			t.Errorf("%v: TpmSupport %q", c.modes, q.Get("TpmSupport"))
		}
		if imds := q.Get("ImdsSupport") == "v2.0"; imds != c.imds {
			t.Errorf("%v: ImdsSupport %q", c.modes, q.Get("ImdsSupport"))
		}
	}
}

// Some puts answer 503 or 500, some connections drop mid-body: the snapshot still completes and
// holds the disk.
func TestAWSEBSFaults(t *testing.T) {
	f := awstest.New(t)
	f.BlockFault = func(idx int32, attempt int) awstest.Fault {
		switch {
		case idx%3 == 0 && attempt == 1:
			return 503
		case idx%3 == 1 && attempt <= 2:
			return awstest.Drop
		case idx == 4 && attempt == 3:
			return 500
		}
		return awstest.Serve
	}
	buf := awsTestBytes(8<<20, 0, 1, 2, 3, 4, 5, 6, 9, 13, 15)
	res, err := awsTestTarget(f, "faults").Push(context.Background(), awsArtifact(t, buf, "uefi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := f.Compare(res.Snapshot, bytes.NewReader(buf), int64(len(buf))); d != "" {
		t.Fatal(d)
	}
	if n, _ := strconv.Atoi(res.Details["retries"]); n < 10 {
		t.Errorf("%s retries, want at least 10", res.Details["retries"])
	}
}

func TestAWSEBSBlockFailsForGood(t *testing.T) {
	f := awstest.New(t)
	f.BlockFault = func(idx int32, attempt int) awstest.Fault {
		if idx == 4 {
			return 503
		}
		return awstest.Serve
	}
	tg := awsTestTarget(f, "broken")
	tg.MaxAttempts = 3
	_, err := tg.Push(context.Background(), awsArtifact(t, awsTestBytes(awsTestSize, awsTestBlocks...), "uefi"), nil)
	if err == nil || !strings.Contains(err.Error(), "block 4 (offset 2097152) after 3 attempts") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err %v", err)
	}
	if f.Images() != 0 || f.Calls("CompleteSnapshot") != 0 {
		t.Error("snapshot completed or image registered after a failed block")
	}
}

// A block damaged on the way is refused by the server's checksum check: a clear error naming it.
func TestAWSEBSCorruptBlockRejected(t *testing.T) {
	f := awstest.New(t)
	f.Corrupt = func(idx int32) bool { return idx == 1 }
	_, err := awsTestTarget(f, "corrupt").Push(context.Background(), awsArtifact(t, awsTestBytes(awsTestSize, awsTestBlocks...), "uefi"), nil)
	if err == nil || !strings.Contains(err.Error(), "block 1 ") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("err %v", err)
	}
	if f.Images() != 0 {
		t.Error("image registered")
	}
}

// The fake really checks: a wrong block checksum, a wrong aggregate, a wrong signature all fail.
func TestAWSFakeRejectsWrongValues(t *testing.T) {
	f := awstest.New(t)
	ctx := context.Background()
	client := func(secret string) *ebs.Client {
		return ebs.New(ebs.Options{Region: f.Region, BaseEndpoint: aws.String(f.URL),
			Credentials: credentials.NewStaticCredentialsProvider(f.AccessKey, secret, ""), Retryer: aws.NopRetryer{}})
	}
	c := client(f.SecretKey)
	st, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ClientToken: aws.String("t")})
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte{7}, EBSBlockSize)
	sum := sha256.Sum256(block)
	put := func(c *ebs.Client, checksum []byte) error {
		_, err := c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{SnapshotId: st.SnapshotId, BlockIndex: aws.Int32(0),
			BlockData: bytes.NewReader(block), DataLength: aws.Int32(EBSBlockSize), Checksum: aws.String(base64.StdEncoding.EncodeToString(checksum)),
			ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256})
		return err
	}
	wrong := sum
	wrong[0] ^= 1
	if err := put(c, wrong[:]); err == nil {
		t.Error("a wrong block checksum was accepted")
	}
	if err := put(client("not-the-secret"), sum[:]); err == nil {
		t.Error("a wrong signature was accepted")
	}
	if p := f.TakeProblems(); len(p) != 2 || !strings.Contains(p[0], "does not match the data") || !strings.Contains(p[1], "signature does not match") {
		t.Errorf("problems %q", p)
	}
	if err := put(c, sum[:]); err != nil {
		t.Fatal(err)
	}
	_, err = c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: st.SnapshotId, ChangedBlocksCount: aws.Int32(1),
		Checksum: aws.String(base64.StdEncoding.EncodeToString(wrong[:])), ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear,
		ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256})
	if err == nil {
		t.Error("a wrong aggregate checksum was accepted")
	}
	if p := f.TakeProblems(); len(p) != 1 || !strings.Contains(p[0], "aggregate checksum") {
		t.Errorf("problems %q", p)
	}
	// An EC2 handler records its violation while it holds the server's lock (this hung before).
	ec := ec2.New(ec2.Options{Region: f.Region, BaseEndpoint: aws.String(f.URL),
		Credentials: credentials.NewStaticCredentialsProvider(f.AccessKey, f.SecretKey, ""), Retryer: aws.NopRetryer{}})
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = ec.RegisterImage(tctx, &ec2.RegisterImageInput{Name: aws.String("web"), Architecture: "sparc"})
	if err == nil || tctx.Err() != nil {
		t.Errorf("RegisterImage with Architecture sparc: %v (ctx %v), want a prompt rejection", err, tctx.Err())
	}
	if p := f.TakeProblems(); len(p) != 1 || !strings.Contains(p[0], `Architecture "sparc"`) {
		t.Errorf("problems %q", p)
	}
}

func TestAWSSecretNotInError(t *testing.T) {
	f := awstest.New(t)
	const secret = "a-recognisable-secret-4f1c"
	tg := awsTestTarget(f, "secret")
	tg.Config.Credentials = credentials.NewStaticCredentialsProvider(f.AccessKey, secret, "a-recognisable-session-token")
	_, err := tg.Push(context.Background(), awsArtifact(t, awsTestBytes(awsTestSize, 0), "uefi"), nil)
	if err == nil {
		t.Fatal("push with a wrong secret succeeded")
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "a-recognisable-session-token") {
		t.Fatalf("secret in error: %v", err)
	}
	if !strings.Contains(err.Error(), "403") {
		t.Errorf("err %v", err)
	}
	f.TakeProblems() // the bad signatures
}

// Ctrl-C mid-upload: the push stops with the context's error and registers nothing.
func TestAWSEBSCancel(t *testing.T) {
	f := awstest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tg := awsTestTarget(f, "cancel")
	tg.Workers = 1
	_, err := tg.Push(ctx, awsArtifact(t, awsTestBytes(8<<20, 0, 1, 2, 3, 4, 5, 6, 7, 8), "uefi"), func(e publish.Event) {
		if e.Step == "upload" && e.Done >= 2*EBSBlockSize {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) && (err == nil || !strings.Contains(err.Error(), "canceled")) {
		t.Fatalf("err %v", err)
	}
	if n := f.Calls("PutSnapshotBlock"); n > 3 || f.Images() != 0 || f.Calls("CompleteSnapshot") != 0 {
		t.Errorf("after cancel: %d blocks, %d images", n, f.Images())
	}
}

func BenchmarkAWSEBSUpload(b *testing.B) {
	const size = 64 << 20
	var blocks []int64
	for i := int64(0); i < size/EBSBlockSize; i++ {
		if i%8 != 7 { // one block in eight stays zero
			blocks = append(blocks, i)
		}
	}
	buf := awsTestBytes(size, blocks...)
	for _, bc := range []struct {
		w   int
		rtt time.Duration
	}{{1, 0}, {16, 0}, {1, 20 * time.Millisecond}, {16, 20 * time.Millisecond}} {
		w := bc.w
		b.Run("workers="+strconv.Itoa(w)+"/rtt="+bc.rtt.String(), func(b *testing.B) {
			a := awsArtifact(b, buf, "uefi")
			b.SetBytes(int64(len(blocks)) * EBSBlockSize)
			for i := 0; i < b.N; i++ {
				f := awstest.New(b) // a fresh account: nothing to reuse
				f.Latency = bc.rtt
				tg := awsTestTarget(f, "bench")
				tg.Workers = w
				res, err := tg.Push(context.Background(), a, nil)
				if err != nil {
					b.Fatal(err)
				}
				if res.Details["snapshot_reused"] == "true" {
					b.Fatal("snapshot reused")
				}
				if f.ZeroPuts() != 0 {
					b.Fatalf("%d all-zero blocks sent", f.ZeroPuts())
				}
				sent, _ := strconv.Atoi(res.Details["blocks_sent"])
				zero, _ := strconv.Atoi(res.Details["blocks_zero"])
				b.ReportMetric(float64(sent), "blocks-sent/op")
				b.ReportMetric(float64(zero), "zero-blocks-skipped/op")
			}
		})
	}
}

// awsVMDK writes buf as a streamOptimized VMDK file and opens it.
func awsVMDK(t testing.TB, buf []byte) publish.Artifact {
	t.Helper()
	f, err := diskfmt.Lookup("vmdk")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := diskfmt.OpenReaderAt(bytes.NewReader(buf), int64(len(buf)))
	p := filepath.Join(t.TempDir(), "d.vmdk")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(context.Background(), out, raw); err != nil {
		t.Fatal(err)
	}
	out.Close()
	img, err := diskfmt.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return publish.Artifact{Path: p, Image: img, BootModes: []string{"uefi"}, Arch: "x86_64"}
}
