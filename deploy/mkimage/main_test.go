package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeCA is a CA bundle stand-in: the program checks only that it holds a PEM certificate.
const fakeCA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

// fakes writes a small stand-in for the imgfab binary and a CA bundle.
func fakes(t *testing.T) (bin, ca string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "imgfab")
	// Not ELF: accepted with -arch only. Some binary bytes, to see that they are copied as they are.
	data := append([]byte("#!fake imgfab\n"), 0, 1, 2, 0xff, 0xfe, '\n')
	if err := os.WriteFile(bin, data, 0o700); err != nil {
		t.Fatal(err)
	}
	ca = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte(fakeCA), 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, ca
}

// mkimage runs the program with args and fails the test on an error.
func mkimage(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("mkimage %q: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

// readLayout returns the one image of the layout at dir and its index.json entry.
func readLayout(t *testing.T, dir string) (v1.Image, v1.Descriptor) {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("%s: %d manifests in index.json, want 1", dir, len(im.Manifests))
	}
	desc := im.Manifests[0]
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img, desc
}

// tree maps every file of dir (relative path) to its bytes.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		m[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReproducible: two builds from the same inputs are the same bytes, file for file, in
// different directories at different times; SOURCE_DATE_EPOCH changes the digest and the mtimes.
func TestReproducible(t *testing.T) {
	bin, ca := fakes(t)
	args := []string{"-binary", bin, "-ca-certs", ca, "-arch", "amd64", "-version", "v1.2.3"}
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "other", "b")
	if err := os.MkdirAll(filepath.Dir(b), 0o755); err != nil {
		t.Fatal(err)
	}
	mkimage(t, append(args, "-o", a)...)
	time.Sleep(1100 * time.Millisecond) // a clock leaking into the image would show now
	mkimage(t, append(args, "-o", b)...)
	_, da := readLayout(t, a)
	_, db := readLayout(t, b)
	if da.Digest != db.Digest {
		t.Fatalf("two builds: %s and %s", da.Digest, db.Digest)
	}
	ta, tb := tree(t, a), tree(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("%d files vs %d", len(ta), len(tb))
	}
	for p, data := range ta {
		if !bytes.Equal(data, tb[p]) {
			t.Errorf("%s differs between the two builds", p)
		}
	}
	// Readable by others, whatever the umask.
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err == nil && fi.Mode().Perm()&0o044 != 0o044 {
			t.Errorf("%s: mode %v, not readable by others", p, fi.Mode())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every blob is named by its sha256 (the layout is what skopeo and registries verify).
	for p, data := range ta {
		if strings.HasPrefix(p, filepath.Join("blobs", "sha256")+string(filepath.Separator)) {
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != filepath.Base(p) {
				t.Errorf("%s: content sha256 is %x", p, sum)
			}
		}
	}
	// Rebuilding into an existing layout replaces it with the same bytes.
	mkimage(t, append(args, "-o", a)...)
	if _, d := readLayout(t, a); d.Digest != da.Digest {
		t.Errorf("rebuilt in place: %s, want %s", d.Digest, da.Digest)
	}

	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	c := filepath.Join(t.TempDir(), "c")
	mkimage(t, append(args, "-o", c)...)
	img, dc := readLayout(t, c)
	if dc.Digest == da.Digest {
		t.Error("SOURCE_DATE_EPOCH did not change the digest")
	}
	for _, h := range layerHeaders(t, img) {
		if !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: mtime %v, want SOURCE_DATE_EPOCH", h.Name, h.ModTime)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("config created %v, want SOURCE_DATE_EPOCH", cf.Created)
	}
}

// header is a tar header with the entry's content.
type header struct {
	*tar.Header
	data []byte
}

// layerHeaders reads the image's one layer.
func layerHeaders(t *testing.T, img v1.Image) []header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var hs []header
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, header{h, data})
	}
	return hs
}

// TestLayerAndConfig: the layer holds exactly the expected entries, in order, owned by root with
// the expected modes and contents, and the config runs imgfab serve as 65532:65532.
func TestLayerAndConfig(t *testing.T) {
	bin, ca := fakes(t)
	binData, _ := os.ReadFile(bin)
	dir := filepath.Join(t.TempDir(), "img")
	out := mkimage(t, "-binary", bin, "-ca-certs", ca, "-arch", "arm64", "-version", "v9.8.7", "-o", dir)
	img, desc := readLayout(t, dir)
	if !strings.Contains(out, desc.Digest.String()) || !strings.Contains(out, "linux/arm64") {
		t.Errorf("output %q does not name %s and linux/arm64", out, desc.Digest)
	}
	if desc.Annotations[refNameAnnot] != "latest" {
		t.Errorf("index.json annotations %v, want %s=latest", desc.Annotations, refNameAnnot)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", desc.MediaType)
	}

	want := []struct {
		name string
		typ  byte
		mode int64
		data string
	}{
		{"etc/", tar.TypeDir, 0o755, ""},
		{"etc/group", tar.TypeReg, 0o644, group},
		{"etc/passwd", tar.TypeReg, 0o644, passwd},
		{"etc/ssl/", tar.TypeDir, 0o755, ""},
		{"etc/ssl/certs/", tar.TypeDir, 0o755, ""},
		{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, fakeCA},
		{"tmp/", tar.TypeDir, 0o1777, ""},
		{"usr/", tar.TypeDir, 0o755, ""},
		{"usr/local/", tar.TypeDir, 0o755, ""},
		{"usr/local/bin/", tar.TypeDir, 0o755, ""},
		{"usr/local/bin/imgfab", tar.TypeReg, 0o755, string(binData)},
	}
	hs := layerHeaders(t, img)
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
	}
	if len(hs) != len(want) {
		t.Fatalf("layer entries %q, want %d", names, len(want))
	}
	for i, w := range want {
		h := hs[i]
		if h.Name != w.name || h.Typeflag != w.typ || h.Mode != w.mode {
			t.Errorf("entry %d: %s type %c mode %#o, want %s type %c mode %#o", i, h.Name, h.Typeflag, h.Mode, w.name, w.typ, w.mode)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 without names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want 0 (SOURCE_DATE_EPOCH unset)", h.Name, h.ModTime)
		}
		if h.Format != tar.FormatUSTAR || len(h.PAXRecords) > 0 || h.Xattrs != nil { //nolint:staticcheck // Xattrs: checking that none leaks
			t.Errorf("%s: format %v, PAX %v: want plain USTAR", h.Name, h.Format, h.PAXRecords)
		}
		if string(h.data) != w.data {
			t.Errorf("%s: content %q, want %q", h.Name, h.data, w.data)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %q", names)
	}
	if hs[6].FileInfo().Mode()&fs.ModeSticky == 0 {
		t.Error("/tmp is not sticky")
	}
	if !strings.Contains(passwd, "nonroot:x:65532:65532:") || !strings.Contains(group, "nonroot:x:65532:") {
		t.Error("no nonroot 65532 in /etc/passwd or /etc/group")
	}

	// The manifest: one gzip OCI layer, an OCI config.
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("manifest: config %s, layers %+v", m.Config.MediaType, m.Layers)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/imgfab"}) || !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	if c.WorkingDir != "/" {
		t.Errorf("working dir %q", c.WorkingDir)
	}
	if c.Labels["org.opencontainers.image.source"] != defaultSource || c.Labels["org.opencontainers.image.version"] != "v9.8.7" {
		t.Errorf("labels %v", c.Labels)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || !cf.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("config %s/%s created %v", cf.OS, cf.Architecture, cf.Created)
	}
	diff, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	diffID, _ := diff[0].DiffID()
	if len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0] != diffID {
		t.Errorf("rootfs diff_ids %v, want [%s]", cf.RootFS.DiffIDs, diffID)
	}
	if len(cf.History) != 1 || cf.History[0].EmptyLayer {
		t.Errorf("history %+v, want the one layer", cf.History)
	}

	// Nothing of the build host: its name, the paths the inputs came from, the user.
	raw, _ := img.RawConfigFile()
	rawManifest, _ := img.RawManifest()
	var leak []string
	if h, err := os.Hostname(); err == nil && len(h) >= 4 && h != "localhost" {
		leak = append(leak, h)
	}
	leak = append(leak, filepath.Dir(bin), dir)
	if u := os.Getenv("USER"); len(u) >= 4 {
		leak = append(leak, u)
	}
	for _, s := range leak {
		for what, b := range map[string][]byte{"config": raw, "manifest": rawManifest} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("the %s holds %q from the build host", what, s)
			}
		}
		for _, h := range hs {
			if strings.Contains(h.Name, s) || bytes.Contains(h.data, []byte(s)) {
				t.Errorf("layer entry %s holds %q from the build host", h.Name, s)
			}
		}
	}
}

// TestStaticELF: a real static Go binary gives the image its architecture; a dynamically linked
// one, a non-ELF file without -arch and an -arch that contradicts the binary are refused.
func TestStaticELF(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "hello.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, ca := fakes(t)
	out := filepath.Join(dir, "img")
	mkimage(t, "-binary", bin, "-ca-certs", ca, "-o", out)
	img, _ := readLayout(t, out)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != runtime.GOARCH {
		t.Errorf("architecture %s, want %s (the binary's)", cf.Architecture, runtime.GOARCH)
	}

	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	fakeBin, _ := fakes(t)
	cases := map[string][]string{
		"contradicting -arch": {"-binary", bin, "-ca-certs", ca, "-arch", other, "-o", filepath.Join(dir, "x")},
		"non-ELF, no -arch":   {"-binary", fakeBin, "-ca-certs", ca, "-o", filepath.Join(dir, "y")},
	}
	// A dynamically linked program from the host, if there is one.
	for _, p := range []string{"/bin/true", "/usr/bin/true", "/bin/sh"} {
		if f, err := elf.Open(p); err == nil {
			dyn := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
			f.Close()
			if dyn {
				cases["dynamic "+p] = []string{"-binary", p, "-ca-certs", ca, "-o", filepath.Join(dir, "z")}
				break
			}
		}
	}
	for name, args := range cases {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestRefusals: command line mistakes, a bad SOURCE_DATE_EPOCH, a CA file with no certificate and
// an -o directory that is not a layout.
func TestRefusals(t *testing.T) {
	bin, ca := fakes(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "empty.crt")
	os.WriteFile(notPEM, nil, 0o644)
	notLayout := filepath.Join(dir, "precious")
	os.MkdirAll(notLayout, 0o755)
	os.WriteFile(filepath.Join(notLayout, "keep"), []byte("x"), 0o644)
	ok := []string{"-binary", bin, "-ca-certs", ca, "-arch", "amd64"}
	for _, c := range []struct {
		name  string
		args  []string
		epoch string
		usage bool
	}{
		{"no -binary", []string{"-o", filepath.Join(dir, "a")}, "", true},
		{"no output", ok, "", true},
		{"extra argument", append(slices.Clone(ok), "-o", filepath.Join(dir, "a"), "extra"), "", true},
		{"insecure without push", append(slices.Clone(ok), "-o", filepath.Join(dir, "a"), "--insecure"), "", true},
		{"bad SOURCE_DATE_EPOCH", append(slices.Clone(ok), "-o", filepath.Join(dir, "a")), "yesterday", true},
		{"negative SOURCE_DATE_EPOCH", append(slices.Clone(ok), "-o", filepath.Join(dir, "a")), "-1", true},
		{"CA file without a certificate", []string{"-binary", bin, "-ca-certs", notPEM, "-arch", "amd64", "-o", filepath.Join(dir, "a")}, "", false},
		{"missing binary", []string{"-binary", filepath.Join(dir, "nope"), "-ca-certs", ca, "-o", filepath.Join(dir, "a")}, "", false},
		{"-o not a layout", append(slices.Clone(ok), "-o", notLayout), "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.epoch != "" {
				t.Setenv("SOURCE_DATE_EPOCH", c.epoch)
			}
			err := run(context.Background(), c.args, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			var ue usageError
			if errors.As(err, &ue) != c.usage {
				t.Errorf("%v: usage error %v, want %v", err, !c.usage, c.usage)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(notLayout, "keep")); err != nil || string(b) != "x" {
		t.Error("a directory that is not a layout was touched")
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused run left an output")
	}
}

// TestPush: --push writes the same image (digest) to a registry as -o writes to a layout.
func TestPush(t *testing.T) {
	// No credentials from the machine running the test: an anonymous push.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	bin, ca := fakes(t)
	dir := filepath.Join(t.TempDir(), "img")
	ref := host + "/imgfab/imgfab:test"
	out := mkimage(t, "-binary", bin, "-ca-certs", ca, "-arch", "amd64", "-o", dir, "--push", ref, "--insecure")
	_, desc := readLayout(t, dir)
	if !strings.Contains(out, host+"/imgfab/imgfab@"+desc.Digest.String()) {
		t.Errorf("output %q does not name the pushed digest %s", out, desc.Digest)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != desc.Digest {
		t.Errorf("registry has %s, the layout %s", got.Digest, desc.Digest)
	}
}

// TestSkopeo: skopeo, an independent reader of OCI layouts, sees the digest, platform, labels,
// user and entrypoint this program wrote. Skipped where skopeo is not installed (CI has it).
func TestSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed")
	}
	bin, ca := fakes(t)
	dir := filepath.Join(t.TempDir(), "img")
	mkimage(t, "-binary", bin, "-ca-certs", ca, "-arch", "amd64", "-version", "v0.0.1", "-o", dir)
	img, desc := readLayout(t, dir)
	sk := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(skopeo, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("skopeo %q: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	for _, ref := range []string{"oci:" + dir, "oci:" + dir + ":latest"} {
		var info struct {
			Digest       string
			Architecture string
			Os           string
			Labels       map[string]string
			Layers       []string
		}
		if err := json.Unmarshal(sk("inspect", ref), &info); err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		ld, _ := layers[0].Digest()
		if info.Digest != desc.Digest.String() || info.Architecture != "amd64" || info.Os != "linux" ||
			info.Labels["org.opencontainers.image.version"] != "v0.0.1" || !slices.Equal(info.Layers, []string{ld.String()}) {
			t.Errorf("skopeo inspect %s: %+v; want digest %s, linux/amd64, version v0.0.1, layer %s", ref, info, desc.Digest, ld)
		}
	}
	raw := sk("inspect", "--raw", "oci:"+dir)
	if sum := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(sum[:]) != desc.Digest.String() {
		t.Errorf("skopeo's raw manifest hashes to %x, index.json says %s", sum, desc.Digest)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(sk("inspect", "--config", "oci:"+dir), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/imgfab"}) || !slices.Equal(cfg.Config.Cmd, []string{"serve"}) {
		t.Errorf("skopeo inspect --config: user %q entrypoint %q cmd %q", cfg.Config.User, cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	// skopeo copies it to another layout, verifying every blob's digest on the way.
	sk("copy", "--quiet", "oci:"+dir, "oci:"+filepath.Join(t.TempDir(), "copy")+":latest")
}
