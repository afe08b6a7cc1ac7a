package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/oci/ocitest"
)

// seededRaw writes a sparse raw disk of 8 MiB with 1 MiB of data from seed at 2 MiB and returns
// its path and the qcow2 diskfmt makes of it (what its containerDisk must hold).
func seededRaw(t *testing.T, seed int64) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	buf := make([]byte, 1<<20)
	rand.New(rand.NewSource(seed)).Read(buf)
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(buf, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	img, err := diskfmt.Open(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	q, _ := diskfmt.Lookup("qcow2")
	qp := filepath.Join(t.TempDir(), "want.qcow2")
	out, err := os.Create(qp)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Write(context.Background(), out, img); err != nil {
		t.Fatal(err)
	}
	out.Close()
	want, err := os.ReadFile(qp)
	if err != nil {
		t.Fatal(err)
	}
	return raw, want
}

func openArch(t *testing.T, path, arch string) publish.Artifact {
	a := openArt(t, path)
	a.Arch, a.BootModes = arch, []string{"uefi"}
	return a
}

// indexDisks is a two-platform input: an amd64 qcow2 and an arm64 raw disk (converted), with
// different bytes, and the qcow2 each platform's containerDisk must hold.
func indexDisks(t *testing.T) (amd, arm publish.Artifact, want map[string][]byte) {
	t.Helper()
	qc, wantAMD := testQcow2(t, t.TempDir())
	raw, wantARM := seededRaw(t, 64)
	if bytes.Equal(wantAMD, wantARM) {
		t.Fatal("the two disks are the same")
	}
	return openArch(t, qc, "amd64"), openArch(t, raw, "arm64"), map[string][]byte{"amd64": wantAMD, "arm64": wantARM}
}

// Two disks of one class become one image index with a containerDisk per platform: the index
// lists linux/amd64 then linux/arm64, each manifest's config has its architecture, and each
// platform's disk is its input, byte for byte. The manifests are the ones Push makes; the index
// is reproducible whatever the order of the disks; a rerun uploads nothing.
func TestOCIIndex(t *testing.T) {
	host := ocitest.Serve(t, ocitest.Registry())
	amd, arm, want := indexDisks(t)
	ref := host + "/vms/multi:1"
	var mu sync.Mutex
	var events []publish.Event
	o := &Target{Ref: ref, Insecure: true, Backoff: fast}
	res, err := o.PushIndex(context.Background(), []publish.Artifact{arm, amd}, func(e publish.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Existing || !strings.HasPrefix(res.ID, "sha256:") || res.Name != ref || res.Details["kind"] != "index" ||
		res.Details["platforms"] != "linux/amd64,linux/arm64" || res.Details["pull"] != host+"/vms/multi@"+res.ID {
		t.Errorf("result %+v", res)
	}
	if res.Details["converted_from.linux/arm64"] != "raw" || res.Details["converted_from.linux/amd64"] != "" {
		t.Errorf("details %v: want only the arm64 disk converted (from raw)", res.Details)
	}

	digest, im := ocitest.PullIndex(t, ref)
	if digest != res.ID || im.SchemaVersion != 2 || im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index %s (push said %s): schema %d, media type %s, %d manifests", digest, res.ID, im.SchemaVersion, im.MediaType, len(im.Manifests))
	}
	for i, arch := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		plat := "linux/" + arch
		if d.Platform == nil || !reflect.DeepEqual(*d.Platform, v1.Platform{OS: "linux", Architecture: arch}) {
			t.Errorf("manifest %d: platform %+v, want %s", i, d.Platform, plat)
		}
		if d.MediaType != types.OCIManifestSchema1 || d.Digest.String() != res.Details["manifest."+plat] {
			t.Errorf("manifest %d: %s %s, want %s %s", i, d.MediaType, d.Digest, types.OCIManifestSchema1, res.Details["manifest."+plat])
		}
		m, cf, es := ocitest.PullPlatform(t, ref, v1.Platform{OS: "linux", Architecture: arch})
		if cf.Architecture != arch || cf.OS != "linux" {
			t.Errorf("%s: config %s/%s", plat, cf.OS, cf.Architecture)
		}
		if len(m.Layers) != 1 || m.Layers[0].Digest.String() != res.Details["layer_digest."+plat] || m.Annotations[AnnotationFormat] != "qcow2" {
			t.Errorf("%s: manifest layers %+v annotations %v, want layer %s", plat, m.Layers, m.Annotations, res.Details["layer_digest."+plat])
		}
		disk := ocitest.CheckContainerDisk(t, es, nil)
		if got, w := sha256.Sum256(disk), sha256.Sum256(want[arch]); got != w {
			t.Errorf("%s: disk sha256 %x (%d bytes), want %x (%d bytes), its input's", plat, got, len(disk), w, len(want[arch]))
		}
	}
	var armUpload bool
	for _, e := range events {
		armUpload = armUpload || (e.Step == "upload" && e.Note == "linux/arm64" && e.Done > 0)
	}
	if !armUpload {
		t.Errorf("no upload event of linux/arm64 in %d events", len(events))
	}

	// The manifests are Push's: the same disk pushed alone has the digest the index lists.
	for _, c := range []struct {
		a    publish.Artifact
		plat string
	}{{amd, "linux/amd64"}, {arm, "linux/arm64"}} {
		single, err := (&Target{Ref: host + "/vms/single:" + strings.ReplaceAll(c.plat, "/", "-"), Insecure: true, Backoff: fast}).Push(context.Background(), c.a, nil)
		if err != nil {
			t.Fatal(err)
		}
		if single.ID != res.Details["manifest."+c.plat] {
			t.Errorf("%s pushed alone: %s, the index lists %s", c.plat, single.ID, res.Details["manifest."+c.plat])
		}
	}

	// Reproducible in any order; the same tag again: nothing uploaded.
	r2, err := (&Target{Ref: host + "/vms/other:x", Insecure: true, Backoff: fast}).PushIndex(context.Background(), []publish.Artifact{amd, arm}, nil)
	if err != nil || r2.ID != res.ID || r2.Existing {
		t.Errorf("other repository, other order: %+v %v; want %s", r2, err, res.ID)
	}
	r3, err := o.PushIndex(context.Background(), []publish.Artifact{amd, arm}, nil)
	if err != nil || r3.ID != res.ID || !r3.Existing {
		t.Errorf("rerun: %+v %v; want existing %s", r3, err, res.ID)
	}
}

// An arm64 disk pushed alone is a linux/arm64 containerDisk.
func TestOCIContainerDiskArm64(t *testing.T) {
	host := ocitest.Serve(t, ocitest.Registry())
	raw, want := seededRaw(t, 7)
	ref := host + "/vms/arm:1"
	if _, err := (&Target{Ref: ref, Insecure: true, Backoff: fast}).Push(context.Background(), openArch(t, raw, "arm64"), nil); err != nil {
		t.Fatal(err)
	}
	_, cf, es := ocitest.PullContainerDisk(t, ref)
	if cf.Architecture != "arm64" || cf.OS != "linux" {
		t.Errorf("config %s/%s, want linux/arm64", cf.OS, cf.Architecture)
	}
	ocitest.CheckContainerDisk(t, es, want)
	if _, err := (&Target{Ref: ref, Insecure: true}).Push(context.Background(), openArch(t, raw, "sparc"), nil); err == nil || err.Error() != `oci: architecture "sparc": want amd64 or arm64` {
		t.Errorf("sparc: %v", err)
	}
}

// What cannot be an index is refused before any request.
func TestOCIIndexRefused(t *testing.T) {
	amd, arm, _ := indexDisks(t)
	amd2 := amd
	amd2.Arch = "x86_64"
	sparc := arm
	sparc.Arch = "sparc"
	for _, c := range []struct {
		name     string
		artifact bool
		as       []publish.Artifact
		want     string
	}{
		{"none", false, nil, "oci: an index needs at least one disk"},
		{"same-arch", false, []publish.Artifact{amd, arm, amd2}, "oci: two disks for platform linux/amd64 in one index"},
		{"sparc", false, []publish.Artifact{amd, sparc}, `oci: disk 2 of the index (` + sparc.Path + `): architecture "sparc": want amd64 or arm64`},
		{"artifact", true, []publish.Artifact{amd, arm}, "oci: an index holds containerDisks, not OCI artifacts"},
		{"no-image", false, []publish.Artifact{amd, {Arch: "arm64"}}, "oci: disk 2 of the index: no disk image"},
	} {
		// Nothing answers at 127.0.0.1:1: each refusal comes before any request.
		o := &Target{Ref: "127.0.0.1:1/vms/x:1", Insecure: true, Artifact: c.artifact, Backoff: fast}
		_, err := o.PushIndex(context.Background(), c.as, nil)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

// skopeo, a client that is not go-containerregistry, picks each platform of the index with
// --override-arch and gets that platform's disk, byte for byte.
func TestOCIIndexSkopeo(t *testing.T) {
	skopeo := testtool.Need(t, "skopeo", "skopeo")
	host := ocitest.Serve(t, ocitest.Registry())
	amd, arm, want := indexDisks(t)
	ref := host + "/vms/multi:1"
	res, err := (&Target{Ref: ref, Insecure: true, Backoff: fast}).PushIndex(context.Background(), []publish.Artifact{amd, arm}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		dir := filepath.Join(t.TempDir(), arch)
		cmd := exec.Command(skopeo, "--insecure-policy", "--override-os", "linux", "--override-arch", arch,
			"copy", "--src-tls-verify=false", "docker://"+ref, "dir:"+dir)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_RUNTIME_DIR="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != res.Details["manifest.linux/"+arch] {
			t.Errorf("%s: skopeo copied manifest %s, the index lists %s", arch, got, res.Details["manifest.linux/"+arch])
		}
		var m v1.Manifest
		if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 {
			t.Fatalf("%s: manifest %s: %v", arch, raw, err)
		}
		var cf v1.ConfigFile
		if b, err := os.ReadFile(filepath.Join(dir, m.Config.Digest.Hex)); err != nil || json.Unmarshal(b, &cf) != nil || cf.Architecture != arch || cf.OS != "linux" {
			t.Errorf("%s: config %+v (%v)", arch, cf, err)
		}
		disk := ocitest.LayerFileDisk(t, filepath.Join(dir, m.Layers[0].Digest.Hex))
		if got, w := sha256.Sum256(disk), sha256.Sum256(want[arch]); got != w {
			t.Errorf("%s: skopeo's disk sha256 %x (%d bytes), want %x (%d bytes), its input's", arch, got, len(disk), w, len(want[arch]))
		}
	}
}
