package aws

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/imgfab/imgfab/publish"
)

// S3 multipart limits.
const (
	s3MinPart  = 5 << 20
	s3MaxParts = 10000
)

// s3Source is what goes to S3: the file as it is for formats ImportSnapshot reads (VMDK, VHD),
// else the raw guest stream.
func s3Source(a publish.Artifact) (src io.ReaderAt, size int64, format string, closeFn func(), err error) {
	var ff string
	switch a.Image.Format() {
	case "vmdk":
		ff = "VMDK"
	case "vhd", "vhd-dynamic":
		ff = "VHD"
	}
	if ff != "" && a.Path != "" {
		f, err := os.Open(a.Path)
		if err != nil {
			return nil, 0, "", nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, "", nil, err
		}
		return f, fi.Size(), ff, func() { f.Close() }, nil
	}
	return a.Image, a.Image.Size(), "RAW", func() {}, nil
}

// S3Key is the object key a push with --via s3 uploads the disk to: content-addressed, so the
// same disk is uploaded once whatever the image name.
func S3Key(contentHash, format string) string {
	return "imgfab/" + contentHash + "." + strings.ToLower(format)
}

// s3PartSize is the part size for an object of size bytes: want (default 64 MiB), at least 5 MiB,
// raised to a whole MiB count that keeps within 10,000 parts.
func s3PartSize(want, size int64) int64 {
	ps := want
	if ps <= 0 {
		ps = 64 << 20
	}
	ps = max(ps, s3MinPart)
	if (size+ps-1)/ps > s3MaxParts {
		ps = ((size+s3MaxParts-1)/s3MaxParts + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

// viaS3 uploads the disk to S3, imports it as a snapshot and tags the snapshot with the content hash.
func (r *run) viaS3(ctx context.Context, a publish.Artifact) (string, error) {
	t := r.t
	src, size, format, closeFn, err := s3Source(a)
	if err != nil {
		return "", fmt.Errorf("aws: opening %s: %w", a.Path, err)
	}
	defer closeFn()
	key := S3Key(r.hash, format)
	r.details["s3_bucket"], r.details["s3_key"], r.details["import_format"] = t.Bucket, key, format
	newClient := func(nop bool) *s3.Client {
		return s3.NewFromConfig(r.cfg, func(o *s3.Options) {
			if t.EndpointS3 != "" {
				o.BaseEndpoint = aws.String(t.EndpointS3)
				o.UsePathStyle = true
			}
			// Content-MD5 on each part is the integrity check; no extra trailing checksums.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			if nop {
				o.Retryer = aws.NopRetryer{}
			}
		})
	}
	if err := r.uploadS3(ctx, newClient(false), newClient(true), key, src, size); err != nil {
		return "", err
	}

	r.p.Emit(publish.Event{Target: targetName, Step: "import", Note: "s3://" + t.Bucket + "/" + key})
	out, err := r.ec2.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
		ClientToken: aws.String(r.token),
		Description: aws.String("imgfab " + t.ImageName),
		DiskContainer: &ec2types.SnapshotDiskContainer{
			Format:      aws.String(format),
			UserBucket:  &ec2types.UserBucket{S3Bucket: aws.String(t.Bucket), S3Key: aws.String(key)},
			Description: aws.String("imgfab " + t.ImageName),
		},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeImportSnapshotTask, Tags: r.ec2Tags()}},
	})
	if err != nil {
		return "", r.err(fmt.Sprintf("ImportSnapshot of s3://%s/%s (%s)", t.Bucket, key, format), err)
	}
	task := aws.ToString(out.ImportTaskId)
	r.details["import_task"] = task
	snap, err := r.waitImport(ctx, task)
	if err != nil {
		return "", err
	}
	if _, err := r.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{snap}, Tags: r.ec2Tags()}); err != nil {
		return "", r.err("tagging snapshot "+snap, err)
	}
	return snap, nil
}

func (r *run) waitImport(ctx context.Context, task string) (string, error) {
	for polls := 1; ; polls++ {
		out, err := r.ec2.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			return "", r.err("waiting for import task "+task, err)
		}
		if len(out.ImportSnapshotTasks) == 1 && out.ImportSnapshotTasks[0].SnapshotTaskDetail != nil {
			d := out.ImportSnapshotTasks[0].SnapshotTaskDetail
			switch aws.ToString(d.Status) {
			case "completed":
				if aws.ToString(d.SnapshotId) == "" {
					return "", fmt.Errorf("aws: import task %s completed without a snapshot", task)
				}
				return aws.ToString(d.SnapshotId), nil
			case "deleting", "deleted":
				return "", fmt.Errorf("aws: import task %s failed: %s", task, aws.ToString(d.StatusMessage))
			}
			r.p.Emit(publish.Event{Target: targetName, Step: "import", Note: task + " " + aws.ToString(d.Status) + " " + aws.ToString(d.Progress) + "%"})
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("aws: waiting for import task %s (%d polls): %w", task, polls, ctx.Err())
		case <-time.After(r.t.PollInterval):
		}
	}
}

// uploadS3 puts src into bucket/key by multipart upload, resuming an unfinished upload of the same
// key: its parts whose size and MD5 (the ETag) match are kept. An object already there with the
// same size and content hash is not uploaded again.
func (r *run) uploadS3(ctx context.Context, client, putClient *s3.Client, key string, src io.ReaderAt, size int64) error {
	t := r.t
	bucket := aws.String(t.Bucket)
	where := "s3://" + t.Bucket + "/" + key
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(key)})
	if err == nil && aws.ToInt64(head.ContentLength) == size && head.Metadata["imgfab-sha256"] == r.hash {
		r.details["s3_existing"] = "true"
		return nil
	}
	var nf *s3types.NotFound
	if err != nil && !errors.As(err, &nf) && !strings.Contains(err.Error(), "StatusCode: 404") {
		return r.err("looking for "+where, err)
	}

	u := &s3Upload{client: client, putClient: putClient, key: key, where: where, src: src, size: size}
	u.partSize = s3PartSize(t.PartSize, size)
	u.nparts = int((size + u.partSize - 1) / u.partSize)
	r.details["part_size"] = strconv.FormatInt(u.partSize, 10)
	r.details["parts_total"] = strconv.Itoa(u.nparts)

	// An unfinished upload of this key to resume?
	uploadID, have, err := r.findUpload(ctx, client, key)
	if err != nil {
		return err
	}
	if uploadID == "" {
		out, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket:      bucket,
			Key:         aws.String(key),
			ContentType: aws.String("application/octet-stream"),
			Metadata:    map[string]string{"imgfab-sha256": r.hash, "imgfab-name": t.ImageName},
		})
		if err != nil {
			return r.err("CreateMultipartUpload "+where, err)
		}
		uploadID = aws.ToString(out.UploadId)
	}
	u.id = uploadID

	etags, err := r.putParts(ctx, u, have)
	if err != nil {
		// The multipart upload is left in place: a rerun resumes it.
		return err
	}
	return r.completeUpload(ctx, u, etags)
}

// s3Upload is one multipart upload of the disk to the bucket.
type s3Upload struct {
	client    *s3.Client
	putClient *s3.Client // without the SDK's retries: run.retry retries each part
	key       string
	where     string // s3://BUCKET/KEY, for messages
	id        string // the upload id
	src       io.ReaderAt
	size      int64
	partSize  int64
	nparts    int
}

// putParts uploads the parts, Workers at a time, each with its Content-MD5; a part the upload
// already has with the same size and MD5 (have, from findUpload) is kept. It returns the parts'
// ETags and records the counts in the details.
func (r *run) putParts(ctx context.Context, u *s3Upload, have map[int32]s3types.Part) ([]string, error) {
	bucket := aws.String(r.t.Bucket)
	etags := make([]string, u.nparts)
	var done publish.Counter
	var sent, resumed, retries atomic.Int64
	err := publish.Parallel(ctx, r.t.Workers, u.nparts, func(ctx context.Context, i int) error {
		num := int32(i + 1)
		off := int64(i) * u.partSize
		n := min(u.partSize, u.size-off)
		h := md5.New()
		if _, err := io.Copy(h, io.NewSectionReader(u.src, off, n)); err != nil {
			return fmt.Errorf("aws: reading part %d (offset %d): %w", num, off, err)
		}
		sum := h.Sum(nil)
		etag := `"` + hex.EncodeToString(sum) + `"`
		if p, ok := have[num]; ok && aws.ToInt64(p.Size) == n && aws.ToString(p.ETag) == etag {
			etags[i] = etag
			resumed.Add(1)
			done.Add(r.p, n, publish.Event{Target: targetName, Step: "upload", Total: u.size})
			return nil
		}
		attempts, err := r.retry(ctx, func() error {
			out, err := u.putClient.UploadPart(ctx, &s3.UploadPartInput{
				Bucket:        bucket,
				Key:           aws.String(u.key),
				UploadId:      aws.String(u.id),
				PartNumber:    aws.Int32(num),
				Body:          io.NewSectionReader(u.src, off, n),
				ContentLength: aws.Int64(n),
				ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(sum)),
			})
			if err == nil {
				etags[i] = aws.ToString(out.ETag)
			}
			return err
		})
		retries.Add(int64(attempts - 1))
		if err != nil {
			return r.err(fmt.Sprintf("UploadPart %s part %d of %d (offset %d, %d bytes) after %d attempts", u.where, num, u.nparts, off, n, attempts), err)
		}
		sent.Add(1)
		done.Add(r.p, n, publish.Event{Target: targetName, Step: "upload", Total: u.size})
		return nil
	})
	r.details["parts_sent"] = strconv.FormatInt(sent.Load(), 10)
	r.details["parts_resumed"] = strconv.FormatInt(resumed.Load(), 10)
	r.details["retries"] = strconv.FormatInt(retries.Load(), 10)
	return etags, err
}

// completeUpload completes the multipart upload from the parts' ETags and checks the object's
// size.
func (r *run) completeUpload(ctx context.Context, u *s3Upload, etags []string) error {
	bucket := aws.String(r.t.Bucket)
	parts := make([]s3types.CompletedPart, u.nparts)
	for i := range parts {
		parts[i] = s3types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: aws.String(etags[i])}
	}
	r.p.Emit(publish.Event{Target: targetName, Step: "complete upload", Done: u.size, Total: u.size})
	if _, err := u.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          bucket,
		Key:             aws.String(u.key),
		UploadId:        aws.String(u.id),
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		return r.err(fmt.Sprintf("CompleteMultipartUpload %s (%d parts)", u.where, u.nparts), err)
	}
	head, err := u.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(u.key)})
	if err != nil {
		return r.err("checking "+u.where, err)
	}
	if got := aws.ToInt64(head.ContentLength); got != u.size {
		return fmt.Errorf("aws: %s has %d bytes after upload, want %d", u.where, got, u.size)
	}
	return nil
}

// findUpload returns the newest unfinished multipart upload of key and its parts.
func (r *run) findUpload(ctx context.Context, client *s3.Client, key string) (string, map[int32]s3types.Part, error) {
	where := "s3://" + r.t.Bucket + "/" + key
	var ups []s3types.MultipartUpload
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(r.t.Bucket), Prefix: aws.String(key)}
	for {
		out, err := client.ListMultipartUploads(ctx, in)
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload" {
			break // gofakes3 answers this instead of an empty list
		}
		if err != nil {
			return "", nil, r.err("listing unfinished uploads of "+where, err)
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) == key {
				ups = append(ups, u)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	if len(ups) == 0 {
		return "", nil, nil
	}
	sort.SliceStable(ups, func(i, j int) bool {
		return aws.ToTime(ups[i].Initiated).After(aws.ToTime(ups[j].Initiated))
	})
	id := aws.ToString(ups[0].UploadId)
	have := map[int32]s3types.Part{}
	pin := &s3.ListPartsInput{Bucket: aws.String(r.t.Bucket), Key: aws.String(key), UploadId: aws.String(id)}
	for {
		out, err := client.ListParts(ctx, pin)
		if err != nil {
			return "", nil, r.err("listing parts of upload "+id+" of "+where, err)
		}
		for _, p := range out.Parts {
			have[aws.ToInt32(p.PartNumber)] = p
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		pin.PartNumberMarker = out.NextPartNumberMarker
	}
	r.details["s3_upload_resumed"] = id
	return id, have, nil
}
