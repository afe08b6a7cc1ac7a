package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// manyLayers writes an image of n small layers (a file each, and a whiteout of the file of the
// layer below) as an OCI layout and as a docker-archive in dir and returns both sources.
func manyLayers(t testing.TB, dir string, n int) (oci, archive string) {
	t.Helper()
	blobs := filepath.Join(dir, "oci", "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) string {
		d := digestOf(b)
		if err := os.WriteFile(filepath.Join(blobs, d), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	var ar bytes.Buffer
	aw := tar.NewWriter(&ar)
	add := func(name string, b []byte) {
		aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		aw.Write(b)
	}
	var ds []desc
	var diffIDs, files []string
	for i := 0; i < n; i++ {
		raw := tarOf(t, "d/", fmt.Sprintf("d/f%d=%d", i, i), fmt.Sprintf("d/.wh.f%d", i-1))
		gz := gzipOf(t, raw)
		ds = append(ds, desc{"application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + put(gz), int64(len(gz))})
		diffIDs = append(diffIDs, "sha256:"+digestOf(raw))
		f := digestOf(raw) + "/layer.tar"
		files = append(files, f)
		add(f, raw)
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}, "config": map[string]any{}})
	cd := put(cfg)
	add(cd+".json", cfg)
	mf, _ := json.Marshal([]map[string]any{{"Config": cd + ".json", "RepoTags": []string{"x/y:z"}, "Layers": files}})
	add("manifest.json", mf)
	aw.Close()
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc{"application/vnd.oci.image.config.v1+json", "sha256:" + cd, int64(len(cfg))}, "layers": ds})
	md := put(man)
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{
		desc{"application/vnd.oci.image.manifest.v1+json", "sha256:" + md, int64(len(man))}}})
	os.WriteFile(filepath.Join(dir, "oci", "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(dir, "oci", "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "a.tar"), ar.Bytes(), 0o644)
	return "oci:" + filepath.Join(dir, "oci"), "docker-archive:" + filepath.Join(dir, "a.tar")
}

// buildTree resolves src and reads its flattened tree to the end; it returns the number of entries.
func buildTree(t testing.TB, src string) int {
	t.Helper()
	ctx := context.Background()
	img, err := Resolve(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.Digest(); err != nil {
		t.Fatal(err)
	}
	if _, err := img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	ls, err := ImageLayers(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	rc := Flatten(ctx, ls)
	defer rc.Close()
	tr := tar.NewReader(rc)
	n := 0
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
}

// mallocs counts the heap allocations of f: work that does not depend on the machine's speed.
func mallocs(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.Mallocs - a.Mallocs
}

// TestManyLayersLinear: resolving an image, listing its layers and flattening them costs work in
// proportion to the number of layers. go-containerregistry looks a layer up by parsing the whole
// manifest (or config, or tar) again: 4 times the layers was about 16 times the work.
func TestManyLayersLinear(t *testing.T) {
	const small, big = 150, 600
	dir := t.TempDir()
	o1, a1 := manyLayers(t, filepath.Join(dir, "small"), small)
	o2, a2 := manyLayers(t, filepath.Join(dir, "big"), big)
	for _, c := range []struct{ name, small, big string }{{"oci", o1, o2}, {"docker-archive", a1, a2}} {
		t.Run(c.name, func(t *testing.T) {
			var n1, n2 int
			m1 := mallocs(func() { n1 = buildTree(t, c.small) })
			m2 := mallocs(func() { n2 = buildTree(t, c.big) })
			if n1 != 2 || n2 != 2 { // d and its last file
				t.Fatalf("trees of %d and %d entries, want 2", n1, n2)
			}
			ratio := float64(m2) / float64(m1)
			t.Logf("%d layers: %d allocations, %d layers: %d (x%.1f for x%d layers)", small, m1, big, m2, ratio, big/small)
			if ratio > 1.5*big/small {
				t.Errorf("work grows faster than the number of layers: x%.1f for x%d layers", ratio, big/small)
			}
		})
	}
}

// BenchmarkManyLayers: time per layer of an image of 2,000 small layers (resolve, list, flatten).
func BenchmarkManyLayers(b *testing.B) {
	const n = 2000
	o, a := manyLayers(b, b.TempDir(), n)
	for _, c := range []struct{ name, src string }{{"oci", o}, {"docker-archive", a}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				buildTree(b, c.src)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/layer")
		})
	}
}
