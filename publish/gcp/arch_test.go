package gcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/gcp/gcptest"
)

// An arm64 disk goes to images.insert with architecture ARM64 and UEFI_COMPATIBLE (also when
// its boot modes are unknown); "amd64" (inspect's name) goes as X86_64. The image GCE makes
// keeps the architecture, and a rerun finds it.
func TestGCPArchitecture(t *testing.T) {
	for _, c := range []struct {
		name, arch string
		modes      []string
		want       string
		feats      []string
	}{
		{"arm64", "arm64", []string{"uefi"}, "ARM64", []string{"UEFI_COMPATIBLE", "GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}},
		{"arm64-modes-unknown", "arm64", nil, "ARM64", []string{"UEFI_COMPATIBLE", "GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}},
		{"amd64", "amd64", []string{"bios"}, "X86_64", []string{"GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}},
		{"amd64-empty", "", []string{"uefi"}, "X86_64", []string{"UEFI_COMPATIBLE", "GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			gcs := gcptest.StartGCS(t, "bkt")
			cs := gcptest.StartCompute(t, "proj-1")
			cs.Source = gcptest.SourceCheck(gcs)
			path, img := gcpTestDisk(t, 8<<20, 1<<20)
			a := publish.Artifact{Path: path, Image: img, BootModes: c.modes, Arch: c.arch}
			res, err := gcpNew(gcs, cs, c.name).Push(context.Background(), a, nil)
			if err != nil {
				t.Fatal(err)
			}
			ins := cs.LastInsert(t)
			if ins.Architecture != c.want {
				t.Errorf("images.insert architecture %q, want %q", ins.Architecture, c.want)
			}
			if got := gcpFeatures(ins); !slices.Equal(got, c.feats) {
				t.Errorf("guestOsFeatures %v, want %v", got, c.feats)
			}
			if made := cs.Images[c.name]; made == nil || made.Architecture != c.want {
				t.Errorf("image made: %+v, want architecture %s", made, c.want)
			}
			if got := gcs.Read(t, "bkt", "imgfab/"+c.name+".tar.gz"); !bytes.Equal(got, gcpTarball(t, img)) {
				t.Errorf("object differs from the GCE tarball")
			}
			res2, err := gcpNew(gcs, cs, c.name).Push(context.Background(), a, nil)
			if err != nil || !res2.Existing || res2.ID != res.ID || len(cs.Inserts) != 1 {
				t.Errorf("rerun: %+v, %v, %d inserts", res2, err, len(cs.Inserts))
			}
		})
	}
}

// What cannot be pushed is refused before any request; an image of the same name and another
// architecture is not reused.
func TestGCPArchitectureRefused(t *testing.T) {
	gcs := gcptest.StartGCS(t, "bkt")
	cs := gcptest.StartCompute(t, "proj-1")
	cs.Source = gcptest.SourceCheck(gcs)
	path, img := gcpTestDisk(t, 8<<20, 1<<20)
	for _, c := range []struct {
		arch  string
		modes []string
		want  string
	}{
		{"sparc", []string{"uefi"}, `gcp: architecture "sparc": want amd64 or arm64`},
		{"arm64", []string{"bios"}, "gcp: architecture arm64 boots UEFI only, but the disk boots [bios]"},
	} {
		_, err := gcpNew(gcs, cs, "refused").Push(context.Background(), publish.Artifact{Path: path, Image: img, BootModes: c.modes, Arch: c.arch}, nil)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %v: err %v, want %q", c.arch, c.modes, err, c.want)
		}
	}
	if len(cs.Calls) != 0 || gcs.Chunks.Load() != 0 {
		t.Errorf("requests sent for refused pushes: %v, %d upload requests", cs.Calls, gcs.Chunks.Load())
	}

	if _, err := gcpNew(gcs, cs, "web").Push(context.Background(), publish.Artifact{Path: path, Image: img, BootModes: []string{"uefi"}, Arch: "amd64"}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := gcpNew(gcs, cs, "web").Push(context.Background(), publish.Artifact{Path: path, Image: img, BootModes: []string{"uefi"}, Arch: "arm64"}, nil)
	if want := "gcp: image web is X86_64, this disk is ARM64: give another image name"; err == nil || err.Error() != want {
		t.Fatalf("err %v, want %q", err, want)
	}
	if len(cs.Inserts) != 1 {
		t.Errorf("%d inserts, want 1", len(cs.Inserts))
	}
}

// recordTB records the errors a fake reports instead of failing the test.
type recordTB struct {
	testing.TB
	errs []string
}

func (r *recordTB) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}

// The Compute stub refuses what GCE refuses: an architecture by another name than GCE's.
func TestGCPFakeRejectsWrongArchitecture(t *testing.T) {
	rec := &recordTB{TB: t}
	cs := gcptest.StartCompute(rec, "proj-1")
	for _, arch := range []string{"amd64", "arm64", "AARCH64", ""} {
		rec.errs = nil
		body, _ := json.Marshal(&compute.Image{Name: "x", Architecture: arch, RawDisk: &compute.ImageRawDisk{Source: "https://storage.googleapis.com/bkt/o.tar.gz"}})
		resp, err := http.Post(cs.URL+"/compute/v1/projects/proj-1/global/images?requestId=0b5c5e1a-1c7e-5a2b-9c3d-4e5f60718293", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || len(rec.errs) != 1 || !strings.Contains(rec.errs[0], fmt.Sprintf("architecture %q", arch)) {
			t.Errorf("architecture %q: status %d, stub errors %q; want 400 naming it", arch, resp.StatusCode, rec.errs)
		}
	}
	if len(cs.Images) != 0 {
		t.Errorf("images made: %v", cs.Images)
	}
}
