package layers

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testImage builds an image for platform os/arch from layers given as compact entries, each
// compressed as the media type says.
func testImage(t *testing.T, docker bool, arch string, mts []types.MediaType, layers ...[]ent) v1.Image {
	t.Helper()
	img := empty.Image
	if docker {
		img = mutate.MediaType(img, types.DockerManifestSchema2)
		img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	} else {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	for i, l := range layers {
		raw := tarOf(t, l...)
		mt := mts[i%len(mts)]
		var blob []byte
		switch mt {
		case types.OCILayer, types.DockerLayer:
			blob = gzipOf(t, raw)
		case types.OCILayerZStd:
			blob = zstdOf(t, raw)
		default:
			blob = raw
		}
		var err error
		if img, err = mutate.AppendLayers(img, &testLayer{blob: blob, raw: raw, mt: mt}); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// testLayer is a v1.Layer with a real diff_id (static.NewLayer takes the blob for the tar).
type testLayer struct {
	blob, raw []byte
	mt        types.MediaType
}

func (l *testLayer) Digest() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: digestOf(l.blob)}, nil
}
func (l *testLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: digestOf(l.raw)}, nil
}
func (l *testLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l *testLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.raw)), nil
}
func (l *testLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *testLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func flattenImage(t *testing.T, img v1.Image) ([]string, error) {
	t.Helper()
	ls, err := ImageLayers(context.Background(), img)
	if err != nil {
		return nil, err
	}
	return flatten(t, ls)
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeLayout(t *testing.T) (string, map[string]v1.Image) {
	t.Helper()
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[string]v1.Image{
		"v1":    testImage(t, false, "amd64", []types.MediaType{types.OCILayer}, []ent{"a=1"}, []ent{".wh.a", "b=2"}),
		"v2":    testImage(t, false, "amd64", []types.MediaType{types.OCILayerZStd, types.OCIUncompressedLayer}, []ent{"c=3"}, []ent{"d=4"}),
		"amd64": testImage(t, false, "amd64", []types.MediaType{types.OCILayer}, []ent{"arch=amd64"}),
		"arm64": testImage(t, false, "arm64", []types.MediaType{types.OCILayer}, []ent{"arch=arm64"}),
	}
	for _, tag := range []string{"v1", "v2"} {
		if err := lp.AppendImage(imgs[tag], layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
			t.Fatal(err)
		}
	}
	multi := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: imgs["amd64"], Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: imgs["arm64"], Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	if err := lp.AppendIndex(multi, layout.WithAnnotations(map[string]string{refNameAnnotation: "example.com/multi:latest"})); err != nil {
		t.Fatal(err)
	}
	nested := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: multi})
	if err := lp.AppendIndex(nested, layout.WithAnnotations(map[string]string{refNameAnnotation: "nested"})); err != nil {
		t.Fatal(err)
	}
	return dir, imgs
}

func TestResolveLayout(t *testing.T) {
	ctx := context.Background()
	dir, imgs := writeLayout(t)
	tests := []struct {
		source string
		opts   []Option
		want   string // key of imgs
		files  []string
	}{
		{"oci:" + dir + ":v1", nil, "v1", []string{"b=2"}},
		{"oci:" + dir + ":v2", nil, "v2", []string{"c=3", "d=4"}},
		{"oci:" + dir + ":latest", nil, "amd64", []string{"arch=amd64"}},
		{"oci:" + dir + ":example.com/multi:latest", []Option{WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"})}, "arm64", []string{"arch=arm64"}},
		{"oci:" + dir + ":nested", []Option{WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})}, "arm64", []string{"arch=arm64"}},
		{"oci:" + dir + ":nested", nil, "amd64", []string{"arch=amd64"}},
	}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.source, "oci:"+dir), func(t *testing.T) {
			img, err := Resolve(ctx, tc.source, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := digest(t, img), digest(t, imgs[tc.want]); got != want {
				t.Errorf("resolved %s, want %s (%s)", got, want, tc.want)
			}
			files, err := flattenImage(t, img)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sorted(files), tc.files) {
				t.Errorf("files %q, want %q", files, tc.files)
			}
		})
	}
	errs := []struct {
		source string
		opts   []Option
		want   []string
	}{
		{"oci:" + dir, nil, []string{"holds 4 manifests", "v1, v2"}},
		{"oci:" + dir + ":nope", nil, []string{`no manifest tagged "nope"`, "example.com/multi:latest, nested, v1, v2"}},
		{"oci:" + dir + ":latest", []Option{WithPlatform(v1.Platform{OS: "linux", Architecture: "s390x"})},
			[]string{"no image for platform linux/s390x", "available: linux/amd64, linux/arm64/v8"}},
		{"oci:" + dir + ":nested", []Option{WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v7"})},
			[]string{"no image for platform linux/arm64/v7", "linux/arm64/v8"}},
		{"oci:" + filepath.Join(dir, "missing"), nil, []string{"no such file"}},
	}
	for _, tc := range errs {
		_, err := Resolve(ctx, tc.source, tc.opts...)
		if err == nil {
			t.Errorf("%s: no error", tc.source)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.source, err, w)
			}
		}
	}
}

func TestResolveLayoutSingle(t *testing.T) {
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t, true, "amd64", []types.MediaType{types.DockerLayer, types.DockerUncompressedLayer}, []ent{"etc/", "etc/a=1"}, []ent{"etc/b=2"})
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(context.Background(), "oci:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, got) != digest(t, img) {
		t.Fatal("wrong image")
	}
	if mt, _ := got.MediaType(); mt != types.DockerManifestSchema2 {
		t.Errorf("media type %s", mt)
	}
	files, err := flattenImage(t, got)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"etc/", "etc/a=1", "etc/b=2"}; !reflect.DeepEqual(sorted(files), want) {
		t.Errorf("files %q, want %q", files, want)
	}
}

// TestImageLayersCorrupt damages blobs of a layout and expects errors naming what is wrong.
func TestImageLayersCorrupt(t *testing.T) {
	ctx := context.Background()
	mk := func(t *testing.T) (string, v1.Image) {
		dir := t.TempDir()
		lp, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		img := testImage(t, false, "amd64", []types.MediaType{types.OCILayer}, []ent{"a=" + strings.Repeat("x", 3000)})
		if err := lp.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		return dir, img
	}
	blobPath := func(dir string, h v1.Hash) string { return filepath.Join(dir, "blobs", h.Algorithm, h.Hex) }

	t.Run("layer digest", func(t *testing.T) {
		dir, img := mk(t)
		m, _ := img.Manifest()
		ld := m.Layers[0].Digest
		other, _ := os.ReadFile(blobPath(dir, ld))
		other[4] ^= 1 // gzip MTIME (RFC 1952 section 2.3): still decompresses, digest differs
		os.WriteFile(blobPath(dir, ld), other, 0o644)
		got, err := Resolve(ctx, "oci:"+dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = flattenImage(t, got)
		if err == nil || !strings.Contains(err.Error(), "layer "+ld.String()) || !strings.Contains(err.Error(), "want "+ld.String()) ||
			!strings.Contains(err.Error(), "got sha256:"+digestOf(other)) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("layer size", func(t *testing.T) {
		dir, img := mk(t)
		m, _ := img.Manifest()
		ld := m.Layers[0].Digest
		f, _ := os.OpenFile(blobPath(dir, ld), os.O_APPEND|os.O_WRONLY, 0)
		f.Write([]byte("trailing"))
		f.Close()
		got, _ := Resolve(ctx, "oci:"+dir)
		_, err := flattenImage(t, got)
		if err == nil || !strings.Contains(err.Error(), "layer "+ld.String()) || !strings.Contains(err.Error(), "size mismatch") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("config digest", func(t *testing.T) {
		dir, img := mk(t)
		m, _ := img.Manifest()
		b, _ := os.ReadFile(blobPath(dir, m.Config.Digest))
		b[len(b)-2] ^= 1
		os.WriteFile(blobPath(dir, m.Config.Digest), b, 0o644)
		// Resolve reads and checks the config (its diff_ids are checked too).
		_, err := Resolve(ctx, "oci:"+dir)
		if err == nil || !strings.Contains(err.Error(), "config blob "+m.Config.Digest.String()) || !strings.Contains(err.Error(), "digest mismatch") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("manifest digest", func(t *testing.T) {
		dir, img := mk(t)
		d := digest(t, img)
		b, _ := os.ReadFile(blobPath(dir, d))
		os.WriteFile(blobPath(dir, d), append(b, ' '), 0o644)
		_, err := Resolve(ctx, "oci:"+dir)
		if err == nil || !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), "digest mismatch") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("foreign layer", func(t *testing.T) {
		img := testImage(t, true, "amd64", []types.MediaType{types.DockerForeignLayer}, []ent{"a=1"})
		_, err := ImageLayers(ctx, img)
		if err == nil || !strings.Contains(err.Error(), string(types.DockerForeignLayer)) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestResolveDockerArchive(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		mts  []types.MediaType
	}{
		{"uncompressed", []types.MediaType{types.DockerUncompressedLayer}},
		{"gzip", []types.MediaType{types.DockerLayer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := testImage(t, true, "amd64", tc.mts, []ent{"etc/", "etc/a=1", "etc/b=2"}, []ent{"etc/.wh.a", "etc/c=3"})
			file := filepath.Join(t.TempDir(), "image.tar")
			tag, _ := name.NewTag("example.com/app:1.0")
			if err := tarball.WriteToFile(file, tag, img); err != nil {
				t.Fatal(err)
			}
			for _, src := range []string{"docker-archive:" + file, "docker-archive:" + file + ":example.com/app:1.0"} {
				got, err := Resolve(ctx, src)
				if err != nil {
					t.Fatal(err)
				}
				files, err := flattenImage(t, got)
				if err != nil {
					t.Fatal(err)
				}
				if want := []string{"etc/", "etc/b=2", "etc/c=3"}; !reflect.DeepEqual(sorted(files), want) {
					t.Errorf("%s: files %q, want %q", src, files, want)
				}
			}
			if _, err := Resolve(ctx, "docker-archive:"+file+":example.com/other:2"); err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("unknown tag: got %v", err)
			}
		})
	}
}

func TestResolveRegistry(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	amd := testImage(t, false, "amd64", []types.MediaType{types.OCILayerZStd, types.OCILayer}, []ent{"x=1", "y=2"}, []ent{".wh.x", "z=3"})
	arm := testImage(t, true, "arm64", []types.MediaType{types.DockerLayer}, []ent{"arch=arm64"})
	ref, err := name.ParseReference(host+"/test/app:single", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, amd); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	iref, _ := name.ParseReference(host+"/test/app:multi", name.Insecure)
	if err := remote.WriteIndex(iref, idx); err != nil {
		t.Fatal(err)
	}
	kc := WithKeychain(authn.NewMultiKeychain()) // no credentials: don't read the host's docker config
	for _, tc := range []struct {
		source string
		opts   []Option
		want   v1.Image
		files  []string
	}{
		{"docker://" + host + "/test/app:single", nil, amd, []string{"y=2", "z=3"}},
		{host + "/test/app:multi", nil, amd, []string{"y=2", "z=3"}},
		{host + "/test/app:multi", []Option{WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"})}, arm, []string{"arch=arm64"}},
		{host + "/test/app@" + digest(t, amd).String(), nil, amd, []string{"y=2", "z=3"}},
	} {
		img, err := Resolve(ctx, tc.source, append(tc.opts, WithInsecure(), kc)...)
		if err != nil {
			t.Fatalf("%s: %v", tc.source, err)
		}
		if digest(t, img) != digest(t, tc.want) {
			t.Errorf("%s: wrong image", tc.source)
		}
		files, err := flattenImage(t, img)
		if err != nil {
			t.Fatalf("%s: %v", tc.source, err)
		}
		if !reflect.DeepEqual(sorted(files), tc.files) {
			t.Errorf("%s: files %q, want %q", tc.source, files, tc.files)
		}
	}
	_, err = Resolve(ctx, host+"/test/app:multi", WithInsecure(), kc, WithPlatform(v1.Platform{OS: "linux", Architecture: "riscv64"}))
	if err == nil || !strings.Contains(err.Error(), "available: linux/amd64, linux/arm64") {
		t.Errorf("no matching platform: got %v", err)
	}
	_, err = Resolve(ctx, host+"/test/app:nope", WithInsecure(), kc)
	if err == nil {
		t.Error("missing tag: no error")
	}
}
