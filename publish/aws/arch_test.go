package aws

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/aws/awstest"
)

func awsArchArtifact(t testing.TB, buf []byte, arch string, modes ...string) publish.Artifact {
	a := awsArtifact(t, buf, modes...)
	a.Arch = arch
	return a
}

// An arm64 disk becomes an arm64 AMI booting UEFI, whatever else the disk claims to boot, through
// the EBS direct APIs; "amd64" (inspect's name) goes out as EC2's x86_64.
func TestAWSArm64EBS(t *testing.T) {
	buf := awsTestBytes(awsTestSize, awsTestBlocks...)
	for _, c := range []struct {
		name, arch       string
		modes            []string
		wantArch, wantBM string
	}{
		{"arm64", "arm64", []string{"uefi"}, "arm64", "uefi"},
		{"arm64-modes-unknown", "arm64", nil, "arm64", "uefi"},
		{"arm64-hybrid-claim", "arm64", []string{"uefi", "bios"}, "arm64", "uefi"},
		{"aarch64", "aarch64", []string{"uefi"}, "arm64", "uefi"},
		{"amd64", "amd64", []string{"uefi", "bios"}, "x86_64", "uefi-preferred"},
		{"amd64-empty", "", []string{"bios"}, "x86_64", "legacy-bios"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := awstest.New(t)
			res, err := awsTestTarget(f, c.name).Push(context.Background(), awsArchArtifact(t, buf, c.arch, c.modes...), nil)
			if err != nil {
				t.Fatal(err)
			}
			im := f.Image(c.name)
			if im == nil {
				t.Fatal("no image registered")
			}
			if im.Arch() != c.wantArch || im.BootMode() != c.wantBM {
				t.Errorf("RegisterImage Architecture=%q BootMode=%q, want %q %q", im.Arch(), im.BootMode(), c.wantArch, c.wantBM)
			}
			if res.Details["boot_mode"] != c.wantBM {
				t.Errorf("details boot_mode %q, want %q", res.Details["boot_mode"], c.wantBM)
			}
			if d := f.Compare(res.Snapshot, bytes.NewReader(buf), int64(len(buf))); d != "" {
				t.Fatal(d)
			}
			// The rerun finds the AMI (same architecture): reused.
			res2, err := awsTestTarget(f, c.name).Push(context.Background(), awsArchArtifact(t, buf, c.arch, c.modes...), nil)
			if err != nil || !res2.Existing || res2.ID != res.ID {
				t.Errorf("rerun: %+v, %v; want existing %s", res2, err, res.ID)
			}
		})
	}
}

// The same through S3 and ImportSnapshot.
func TestAWSArm64ViaS3(t *testing.T) {
	ec2f, s3f := awstest.New(t), newS3Fake(t, "imgs")
	a := awsArchArtifact(t, s3TestBuf, "arm64", "uefi")
	res, err := s3TestTarget(ec2f, s3f, "s3-arm64").Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	im := ec2f.Image("s3-arm64")
	if im == nil {
		t.Fatal("no image registered")
	}
	if im.Arch() != "arm64" || im.BootMode() != "uefi" || im.Params.Get("BlockDeviceMapping.1.Ebs.SnapshotId") != res.Snapshot {
		t.Errorf("RegisterImage Architecture=%q BootMode=%q snapshot %q, want arm64 uefi %s", im.Arch(), im.BootMode(),
			im.Params.Get("BlockDeviceMapping.1.Ebs.SnapshotId"), res.Snapshot)
	}
	if ec2f.Calls("ImportSnapshot") != 1 || res.Details["import_format"] != "RAW" {
		t.Errorf("%d imports, details %v", ec2f.Calls("ImportSnapshot"), res.Details)
	}
	if diff := ec2f.Compare(res.Snapshot, bytes.NewReader(s3TestBuf), int64(len(s3TestBuf))); diff != "" {
		t.Fatal(diff)
	}
}

// What cannot be an arm64 AMI is refused before any request, with an error naming both sides.
func TestAWSArm64Refused(t *testing.T) {
	buf := awsTestBytes(awsTestSize, 0)
	for _, c := range []struct {
		flag, arch string
		modes      []string
		want       string
	}{
		{"legacy-bios", "arm64", []string{"uefi"}, `aws: boot mode "legacy-bios" with architecture arm64: Graviton instances boot UEFI only`},
		{"uefi-preferred", "arm64", []string{"uefi"}, `aws: boot mode "uefi-preferred" with architecture arm64`},
		{"", "arm64", []string{"bios"}, "aws: architecture arm64 boots UEFI only, but the disk boots [bios]"},
		{"", "sparc", []string{"uefi"}, `aws: architecture "sparc": want amd64 or arm64`},
	} {
		f := awstest.New(t)
		tg := awsTestTarget(f, "refused")
		tg.BootMode = c.flag
		_, err := tg.Push(context.Background(), awsArchArtifact(t, buf, c.arch, c.modes...), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s %v: err %v, want %q", c.flag, c.arch, c.modes, err, c.want)
		}
		if f.Calls("DescribeImages") != 0 {
			t.Errorf("%s %s: requests sent before the architecture was checked", c.flag, c.arch)
		}
	}
}

// An AMI of the same name and another architecture is not reused.
func TestAWSExistingImageOtherArch(t *testing.T) {
	f := awstest.New(t)
	buf := awsTestBytes(awsTestSize, awsTestBlocks...)
	res, err := awsTestTarget(f, "web").Push(context.Background(), awsArchArtifact(t, buf, "amd64", "uefi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = awsTestTarget(f, "web").Push(context.Background(), awsArchArtifact(t, buf, "arm64", "uefi"), nil)
	want := "aws: AMI " + res.ID + " named web is x86_64, this disk is arm64"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err %v, want %q", err, want)
	}
	if f.Images() != 1 {
		t.Errorf("%d images registered, want 1", f.Images())
	}
}

// The fake refuses what EC2 refuses: an architecture by another name than EC2's, and an arm64 AMI
// that does not boot UEFI.
func TestAWSFakeRejectsWrongArchitecture(t *testing.T) {
	f := awstest.New(t)
	ctx := context.Background()
	res, err := awsTestTarget(f, "base").Push(ctx, awsArtifact(t, awsTestBytes(awsTestSize, 0), "uefi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ec := ec2.New(ec2.Options{Region: f.Region, BaseEndpoint: aws.String(f.URL),
		Credentials: credentials.NewStaticCredentialsProvider(f.AccessKey, f.SecretKey, ""), Retryer: aws.NopRetryer{}})
	register := func(name, arch, boot string) error {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := ec.RegisterImage(tctx, &ec2.RegisterImageInput{
			Name: aws.String(name), Architecture: ec2types.ArchitectureValues(arch), BootMode: ec2types.BootModeValues(boot),
			RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"), EnaSupport: aws.Bool(true),
			BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &ec2types.EbsBlockDevice{
				SnapshotId: aws.String(res.Snapshot), VolumeType: ec2types.VolumeTypeGp3, DeleteOnTermination: aws.Bool(true)}}},
		})
		return err
	}
	for _, c := range []struct{ arch, boot, problem string }{
		{"amd64", "uefi", `RegisterImage: Architecture "amd64"`},
		{"aarch64", "uefi", `RegisterImage: Architecture "aarch64"`},
		{"arm64", "legacy-bios", `RegisterImage: BootMode "legacy-bios" with Architecture arm64`},
		{"arm64", "uefi-preferred", `RegisterImage: BootMode "uefi-preferred" with Architecture arm64`},
	} {
		if err := register("bad-"+c.arch+"-"+c.boot, c.arch, c.boot); err == nil || !strings.Contains(err.Error(), "InvalidParameterValue") {
			t.Errorf("RegisterImage %s %s: %v, want InvalidParameterValue", c.arch, c.boot, err)
		}
		if p := f.TakeProblems(); len(p) != 1 || !strings.HasPrefix(p[0], c.problem) {
			t.Errorf("%s %s: problems %q, want %q", c.arch, c.boot, p, c.problem)
		}
	}
	// The same request with EC2's values is accepted.
	if err := register("good-arm64", "arm64", "uefi"); err != nil {
		t.Fatal(err)
	}
	if im := f.Image("good-arm64"); im == nil || im.Arch() != "arm64" || im.BootMode() != "uefi" {
		t.Errorf("image %+v", im)
	}
	if f.Images() != 2 {
		t.Errorf("%d images, want 2", f.Images())
	}
}
