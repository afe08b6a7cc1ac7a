package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgfab/imgfab/testdata/hostile"
)

// memSource is a source of blobs in memory that counts what is fetched.
type memSource struct {
	blobs   map[v1.Hash][]byte
	fetches map[v1.Hash]int
}

func newMemSource() *memSource {
	return &memSource{blobs: make(map[v1.Hash][]byte), fetches: make(map[v1.Hash]int)}
}

func (s *memSource) put(mt types.MediaType, b []byte, p *v1.Platform) v1.Descriptor {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	s.blobs[h] = b
	return v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(b)), Platform: p}
}

func (s *memSource) manifest(_ context.Context, d v1.Descriptor) ([]byte, error) {
	s.fetches[d.Digest]++
	b, ok := s.blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("%s: not found", d.Digest)
	}
	return readChecked(io.NopCloser(bytes.NewReader(b)), d, maxManifestBytes, "manifest")
}

func (s *memSource) blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	s.fetches[d.Digest]++
	b, ok := s.blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("%s: not found", d.Digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *memSource) total() int {
	n := 0
	for _, c := range s.fetches {
		n += c
	}
	return n
}

// image puts an image manifest (and its config) for arch.
func (s *memSource) image(arch string) v1.Descriptor {
	cfg, _ := json.Marshal(map[string]any{"architecture": arch, "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": []string{}}})
	cd := s.put(types.OCIConfigJSON, cfg, nil)
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "config": cd, "layers": []any{}})
	return s.put(types.OCIManifestSchema1, m, &v1.Platform{OS: "linux", Architecture: arch})
}

// index puts an index of the entries.
func (s *memSource) index(ents ...v1.Descriptor) v1.Descriptor {
	b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": ents})
	return s.put(types.OCIImageIndex, b, nil)
}

// nest wraps d in depth indexes of fan-out copies of the level below.
func (s *memSource) nest(d v1.Descriptor, depth, fanout int) v1.Descriptor {
	for i := 0; i < depth; i++ {
		ents := make([]v1.Descriptor, fanout)
		for j := range ents {
			ents[j] = d
		}
		d = s.index(ents...)
	}
	return d
}

func walk(src source, top v1.Descriptor) (v1.Image, error) {
	w := newWalker(context.Background(), src, &options{platform: v1.Platform{OS: "linux", Architecture: "amd64"}})
	return w.fromDescriptor(top, "test")
}

// TestWalkBounds: nested indexes are walked once each, whatever names them how often; entries
// are budgeted per index and in all, and the errors name the index and the numbers.
func TestWalkBounds(t *testing.T) {
	t.Run("16^9 paths found", func(t *testing.T) {
		s := newMemSource()
		img := s.image("amd64")
		top := s.nest(img, 9, 16)
		got, err := walk(s, top)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != img.Digest {
			t.Errorf("picked %s, want %s", d, img.Digest)
		}
		for h, n := range s.fetches {
			if n != 1 {
				t.Errorf("%s fetched %d times", h, n)
			}
		}
		if n := s.total(); n != 11 { // 9 indexes, the manifest, the config
			t.Errorf("%d fetches, want 11", n)
		}
	})
	t.Run("16^9 paths, no match", func(t *testing.T) {
		s := newMemSource()
		top := s.nest(s.index(s.image("arm64"), s.image("s390x")), 8, 16)
		_, err := walk(s, top)
		if err == nil || !strings.Contains(err.Error(), "no image for platform linux/amd64 (available: linux/arm64, linux/s390x)") {
			t.Fatalf("got %v", err)
		}
		if n := s.total(); n != 9 {
			t.Errorf("%d fetches, want 9 (each index once)", n)
		}
	})
	t.Run("depth", func(t *testing.T) {
		s := newMemSource()
		_, err := walk(s, s.nest(s.image("amd64"), 10, 2))
		if err == nil || !strings.Contains(err.Error(), "nested more than 8 deep") {
			t.Fatalf("got %v", err)
		}
	})
	fakes := func(n, seed int) []v1.Descriptor {
		out := make([]v1.Descriptor, n)
		for i := range out {
			sum := sha256.Sum256([]byte(fmt.Sprint(seed, "/", i)))
			out[i] = v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])},
				Size: 500, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}
		}
		return out
	}
	t.Run("fan-out", func(t *testing.T) {
		s := newMemSource()
		wide := s.index(fakes(1001, 0)...)
		_, err := walk(s, s.index(wide))
		if err == nil || !strings.Contains(err.Error(), "index "+wide.Digest.String()+": index has 1001 entries, more than the 1000 allowed") {
			t.Fatalf("got %v", err)
		}
		s = newMemSource()
		if _, err := walk(s, s.index(s.index(fakes(1000, 0)...))); err == nil || !strings.Contains(err.Error(), "no image for platform") {
			t.Fatalf("1,000 entries: got %v", err)
		}
	})
	t.Run("budget", func(t *testing.T) {
		s := newMemSource()
		var kids []v1.Descriptor
		for i := 0; i < 5; i++ {
			kids = append(kids, s.index(fakes(1000, i)...))
		}
		_, err := walk(s, s.index(kids...))
		if err == nil || !strings.Contains(err.Error(), "index "+kids[4].Digest.String()) ||
			!strings.Contains(err.Error(), "more than 4096 entries in all (5005 with this index of 1000)") {
			t.Fatalf("got %v", err)
		}
		if n := s.total(); n != 6 {
			t.Errorf("%d fetches, want 6", n)
		}
	})
}

// rawManifest is a manifest pushed as it is.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// TestResolveRegistryNested: a registry index nested 6 deep, each level naming the next 16 times,
// costs one manifest request per index.
func TestResolveRegistryNested(t *testing.T) {
	var mu sync.Mutex
	gets := map[string]int{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
			mu.Lock()
			gets[r.URL.Path]++
			mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	arm := testImage(t, false, "arm64", []types.MediaType{types.OCILayer}, []ent{"arch=arm64"})
	ref, _ := name.ParseReference(host+"/test/nested:arm", name.Insecure)
	if err := remote.Write(ref, arm); err != nil {
		t.Fatal(err)
	}
	raw, _ := arm.RawManifest()
	d := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: digest(t, arm), Size: int64(len(raw)), Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}
	for i := 0; i < 6; i++ {
		ents := make([]v1.Descriptor, 16)
		for j := range ents {
			ents[j] = d
		}
		b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": ents})
		sum := sha256.Sum256(b)
		d = v1.Descriptor{MediaType: types.OCIImageIndex, Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, Size: int64(len(b))}
		tag := "sha256:" + d.Digest.Hex
		r, err := name.ParseReference(host+"/test/nested@"+tag, name.Insecure)
		if i == 5 {
			r, err = name.ParseReference(host+"/test/nested:top", name.Insecure)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(r, rawManifest{b, types.OCIImageIndex}); err != nil {
			t.Fatal(err)
		}
	}
	kc := WithKeychain(authn.NewMultiKeychain())
	img, err := Resolve(context.Background(), host+"/test/nested:top", WithInsecure(), kc, WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, img) != digest(t, arm) {
		t.Error("wrong image")
	}
	_, err = Resolve(context.Background(), host+"/test/nested:top", WithInsecure(), kc)
	if err == nil || !strings.Contains(err.Error(), "no image for platform linux/amd64 (available: linux/arm64)") {
		t.Fatalf("got %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for p, n := range gets {
		if n > 2 { // once per Resolve
			t.Errorf("%s fetched %d times", p, n)
		}
	}
	if len(gets) != 7 { // the tag, 5 indexes by digest, the image
		t.Errorf("%d manifests fetched: %v", len(gets), gets)
	}
}

// TestResolveBadDigests: a digest that is not "sha256:" and 64 hex digits is refused up front, the
// message naming the field it was read from, for every source.
func TestResolveBadDigests(t *testing.T) {
	ctx := context.Background()
	layer := func() hostile.Layer { return hostile.L(hostile.Reg("x", "y")) }
	bad := func(d string) hostile.Layer { l := layer(); l.Digest = d; return l }
	badID := func(d string) hostile.Layer { l := layer(); l.DiffID = d; return l }
	for _, c := range []struct {
		name string
		im   hostile.Image
		want string
	}{
		{"layer dotdot", hostile.Image{Layers: []hostile.Layer{layer(), bad("sha256:../../x")}}, `manifest layer 1: digest "sha256:../../x": not 64 hex digits`},
		{"layer uppercase", hostile.Image{Layers: []hostile.Layer{bad("sha256:" + strings.Repeat("A", 64))}}, `manifest layer 0: digest "sha256:AAAA`},
		{"layer no algorithm", hostile.Image{Layers: []hostile.Layer{bad(strings.Repeat("a", 64))}}, "manifest layer 0: digest \"aaaa"},
		{"layer sha512", hostile.Image{Layers: []hostile.Layer{bad("sha512:" + strings.Repeat("a", 128))}}, `manifest layer 0: digest "sha512:`},
		{"config", hostile.Image{Layers: []hostile.Layer{layer()}, ConfigDigest: "sha256:../../../etc/passwd"}, `manifest config: digest "sha256:../../../etc/passwd": not 64 hex digits`},
		{"diff_id", hostile.Image{Layers: []hostile.Layer{layer(), badID("sha256:../x")}}, `config rootfs.diff_ids[1]: digest "sha256:../x": not 64 hex digits`},
		{"archive diff_id", hostile.Image{Layers: []hostile.Layer{layer(), badID("sha256:../../x")}, Archive: true}, `config rootfs.diff_ids[1]: digest "sha256:../../x": not 64 hex digits`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, _, err := c.im.Write(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			_, err = Resolve(ctx, src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "non-hex character") {
				t.Errorf("go-containerregistry's message: %v", err)
			}
		})
	}
	t.Run("index entry", func(t *testing.T) {
		dir := t.TempDir()
		var idx string
		src, _, err := hostile.WriteIndex(dir, func(put func(string, []byte) (map[string]any, error)) ([]map[string]any, error) {
			b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
				"mediaType": hostile.OCIManifest, "digest": "sha256:../../../../etc/passwd", "size": 10}}})
			d, err := put(hostile.OCIIndex, b)
			idx, _ = d["digest"].(string)
			return []map[string]any{d}, err
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Resolve(ctx, src)
		if want := "index " + idx + `: manifests[0]: digest "sha256:../../../../etc/passwd": not 64 hex digits`; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
	})
	t.Run("index.json", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
		os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"`+hostile.OCIManifest+`","digest":"sha256:..","size":1}]}`), 0o644)
		_, err := Resolve(ctx, "oci:"+dir)
		if want := `index.json: manifests[0]: digest "sha256:..": not 64 hex digits`; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
	})
	t.Run("registry", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": hostile.OCIManifest,
			"config": map[string]any{"mediaType": hostile.OCIConfig, "digest": "sha256:" + strings.Repeat("0", 64), "size": 2},
			"layers": []any{map[string]any{"mediaType": hostile.OCILayer, "digest": "sha256:../../x", "size": 2}}})
		ref, _ := name.ParseReference(host+"/test/bad:1", name.Insecure)
		if err := remote.Put(ref, rawManifest{m, types.OCIManifestSchema1}); err != nil {
			t.Fatal(err)
		}
		_, err := Resolve(ctx, host+"/test/bad:1", WithInsecure(), WithKeychain(authn.NewMultiKeychain()))
		if want := `manifest layer 0: digest "sha256:../../x": not 64 hex digits`; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
	})
}

// TestLayerLimits: an image of more than MaxLayers layers is refused before a layer is read; a
// blob named by many layers is read once.
func TestLayerLimits(t *testing.T) {
	ctx := context.Background()
	l := hostile.L(hostile.Reg("x", "y"))
	many := make([]hostile.Layer, MaxLayers+1)
	for i := range many {
		many[i] = l
	}
	src, _, err := hostile.Image{Layers: many}.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(ctx, src); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d layers, more than the %d allowed", MaxLayers+1, MaxLayers)) {
		t.Fatalf("got %v", err)
	}
	src, _, err = hostile.Image{Layers: many[:1000]}.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := Resolve(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := ImageLayers(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	opens := 0
	for i := range ls {
		open := ls[i].Open
		ls[i].Open = func() (io.ReadCloser, error) { opens++; return open() }
	}
	files, err := flatten(t, ls)
	if err != nil || len(files) != 1 || files[0] != "x=y" {
		t.Fatalf("files %q, err %v", files, err)
	}
	if opens != 1 {
		t.Errorf("the blob was opened %d times, want once", opens)
	}
}

// TestResolveArchiveMembers: a docker-archive's members are found through its index, symlinks
// and hardlinks between members followed (older `docker save` links repeated layers), and what is
// missing or ambiguous is named.
func TestResolveArchiveMembers(t *testing.T) {
	ctx := context.Background()
	l0, l1 := tarOf(t, "etc/", "etc/a=1"), tarOf(t, "etc/b=2")
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + digestOf(l0), "sha256:" + digestOf(l1), "sha256:" + digestOf(l0)}}})
	cfgName := digestOf(cfg) + ".json"
	write := func(t *testing.T, manifest string, members ...tar.Header) string {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range members {
			body := map[string][]byte{"l0/layer.tar": l0, "l1/layer.tar": gzipOf(t, l1), cfgName: cfg, "manifest.json": []byte(manifest)}[h.Name]
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len(body))
			}
			h.Mode = 0o644
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write(body)
			}
		}
		tw.Close()
		file := filepath.Join(t.TempDir(), "a.tar")
		os.WriteFile(file, b.Bytes(), 0o644)
		return file
	}
	reg := func(n string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: n} }
	all := []tar.Header{reg("l0/layer.tar"), {Typeflag: tar.TypeSymlink, Name: "l2/layer.tar", Linkname: "../l0/layer.tar"},
		{Typeflag: tar.TypeLink, Name: "l3/layer.tar", Linkname: "l1/layer.tar"}, reg("l1/layer.tar"), reg(cfgName)}
	one := `[{"Config":"` + cfgName + `","RepoTags":["x/y:1"],"Layers":["l0/layer.tar","l3/layer.tar","./l2/layer.tar"]}]`
	file := write(t, one, append(all, reg("manifest.json"))...)
	for _, src := range []string{"docker-archive:" + file, "docker-archive:" + file + ":x/y:1"} {
		img, err := Resolve(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		files, err := flattenImage(t, img)
		if err != nil || strings.Join(sorted(files), " ") != "etc/ etc/a=1 etc/b=2" {
			t.Errorf("%s: files %q, %v", src, files, err)
		}
		if d, _ := img.Digest(); d.Hex != digestOf(cfg) {
			t.Errorf("digest %s, want the config's", d)
		}
	}
	for _, c := range []struct {
		name, manifest string
		members        []tar.Header
		src            string
		want           string
	}{
		{"missing layer", strings.Replace(one, "l0/layer.tar", "nothere/layer.tar", 1), all, "", `layer 0 (sha256:` + digestOf(l0) + `): docker archive`},
		{"two images", "[" + one[1:len(one)-1] + "," + one[1:], all, "", "holds 2 images"},
		{"unknown tag", one, all, ":x/y:2", "tag x/y:2 not found"},
		{"link loop", strings.Replace(one, "l0/layer.tar", "loop", 1), append(all, tar.Header{Typeflag: tar.TypeSymlink, Name: "loop", Linkname: "loop"}), "", "more than 8 links"},
		{"no manifest", "", all, "", `"manifest.json" not found`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ms := c.members
			if c.manifest != "" {
				ms = append(append([]tar.Header(nil), ms...), reg("manifest.json"))
			}
			_, err := Resolve(ctx, "docker-archive:"+write(t, c.manifest, ms...)+c.src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
