// Command mkimage builds the OCI image of imgfab without Docker, a daemon or root: one layer on
// go-containerregistry's empty.Image with
//
//	/usr/local/bin/imgfab               the static binary (CGO_ENABLED=0; `make image` builds it)
//	/etc/passwd, /etc/group             root, nonroot (65532) and nobody, as distroless has them
//	/etc/ssl/certs/ca-certificates.crt  the build host's CA bundle, so registry TLS verifies
//	/tmp                                empty, mode 1777
//
// and a config that runs `imgfab serve` as 65532:65532. The image is reproducible: every entry is
// owned by 0:0 with a fixed mode and the mtime SOURCE_DATE_EPOCH (else 0), entries are sorted, and
// nothing of the build host (name, user, time, paths) is recorded, so the same binary, CA bundle,
// flags and Go toolchain give the same digest on any machine.
//
// Usage:
//
//	go run ./deploy/mkimage -binary ./imgfab -o imgfab-image [-version V] [--push REF [--insecure]]
//
// -o writes an OCI image layout (skopeo copy oci:DIR docker://REF pushes it as is); --push writes
// the image to a registry with the credentials of go-containerregistry's default keychain
// ($DOCKER_CONFIG/config.json, ~/.docker/config.json, podman's auth.json). Either or both.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image holds and how it runs.
const (
	binaryPath  = "/usr/local/bin/imgfab"
	caPath      = "/etc/ssl/certs/ca-certificates.crt"
	nonrootUser = "65532:65532"
	// The label org.opencontainers.image.source; registries such as GHCR link the image to it.
	defaultSource = "https://github.com/imgfab/imgfab"
	refNameAnnot  = "org.opencontainers.image.ref.name"
)

// The accounts of the image, as distroless has them, except that nonroot's home is /tmp: the one
// writable directory (an emptyDir under Kubernetes), so imgfab's default cache ~/.cache/imgfab
// works in `docker run` too when --cache is not given.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nonroot:x:65532:\n" +
		"nobody:x:65534:\n"
)

// options is the parsed command line.
type options struct {
	binary   string
	out      string
	push     string
	insecure bool
	version  string
	source   string
	caCerts  string
	arch     string // "" = from the binary's ELF header
	tag      string
	epoch    int64 // from SOURCE_DATE_EPOCH, else 0
}

// usageError is a command line mistake (exit status 2).
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: mkimage -binary FILE (-o DIR | --push REF) [options]\n\n"+
			"Builds the OCI image of imgfab (a static binary) on an empty base, reproducibly\n"+
			"(mtimes from SOURCE_DATE_EPOCH, else 0).\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.binary, "binary", "", "the static imgfab binary to put at "+binaryPath)
	fs.StringVar(&o.out, "o", "", "write an OCI image layout to this directory (replaced if it holds one)")
	fs.StringVar(&o.push, "push", "", "push the image to this reference (REGISTRY/REPO:TAG)")
	fs.BoolVar(&o.insecure, "insecure", false, "--push over plain HTTP")
	fs.StringVar(&o.version, "version", "dev", "the label org.opencontainers.image.version")
	fs.StringVar(&o.source, "source", defaultSource, "the label org.opencontainers.image.source")
	fs.StringVar(&o.caCerts, "ca-certs", caPath, "the CA bundle to copy to "+caPath)
	fs.StringVar(&o.arch, "arch", "", "the image's architecture (default: the binary's, from its ELF header)")
	fs.StringVar(&o.tag, "tag", "latest", "the image's "+refNameAnnot+" in the layout's index.json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return o, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case o.binary == "":
		return o, usageError{errors.New("-binary FILE is required")}
	case o.out == "" && o.push == "":
		return o, usageError{errors.New("give -o DIR, --push REF or both")}
	case o.insecure && o.push == "":
		return o, usageError{errors.New("--insecure goes with --push")}
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return o, usageError{err}
	}
	o.epoch = epoch
	return o, nil
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/),
// or 0 when unset.
func sourceDateEpoch() (int64, error) {
	s, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	// USTAR headers hold mtimes up to 8^11-1 (year 2242); nothing needs more.
	if err != nil || n < 0 || n >= 1<<33 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want whole seconds since 1970", s)
	}
	return n, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	img, err := buildImage(o)
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := writeLayout(o.out, img, o.tag); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s (%s/%s)\n", o.out, d, cf.OS, cf.Architecture)
	}
	if o.push != "" {
		var nopts []name.Option
		if o.insecure {
			nopts = append(nopts, name.Insecure)
		}
		ref, err := name.ParseReference(o.push, nopts...)
		if err != nil {
			return usageError{fmt.Errorf("--push %s: %w", o.push, err)}
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Fprintf(stdout, "%s@%s\n", ref.Context(), d)
	}
	return nil
}

// buildImage is the image for o: one layer, then the config.
func buildImage(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	arch, err := checkBinary(o.binary, bin, o.arch)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(o.caCerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates (-ca-certs): %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", o.caCerts)
	}
	mtime := time.Unix(o.epoch, 0).UTC()
	tarBytes, err := layerTar([]entry{
		{path: binaryPath, mode: 0o755, data: bin},
		{path: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "/etc/group", mode: 0o644, data: []byte(group)},
		{path: caPath, mode: 0o644, data: ca},
		{path: "/tmp", mode: 0o1777, dir: true},
	}, mtime)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: mtime}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "deploy/mkimage: imgfab, passwd, group, CA certificates, /tmp",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = created
	cf.Config = v1.Config{
		User:       nonrootUser,
		Entrypoint: []string{binaryPath},
		Cmd:        []string{"serve"},
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.source":  o.source,
			"org.opencontainers.image.version": o.version,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// goArch maps ELF machines to GOARCH values.
var goArch = map[elf.Machine]string{
	elf.EM_X86_64:    "amd64",
	elf.EM_AARCH64:   "arm64",
	elf.EM_386:       "386",
	elf.EM_RISCV:     "riscv64",
	elf.EM_PPC64:     "ppc64le",
	elf.EM_S390:      "s390x",
	elf.EM_LOONGARCH: "loong64",
}

// checkBinary returns the image's architecture: the ELF binary's (which must be statically linked:
// the image has no C library or loader), or want for a file that is not ELF (tests use such
// stand-ins), which must then be given.
func checkBinary(file string, bin []byte, want string) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		if want == "" {
			return "", fmt.Errorf("%s is not an ELF executable (%v); give -arch to use it anyway", file, err)
		}
		return want, nil
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked, and the image has no C library: build it with CGO_ENABLED=0", file)
		}
	}
	arch, ok := goArch[f.Machine]
	if !ok || (f.Machine == elf.EM_PPC64 && f.Data != elf.ELFDATA2LSB) {
		return "", fmt.Errorf("%s: no Go architecture for ELF machine %v", file, f.Machine)
	}
	if want != "" && want != arch {
		return "", fmt.Errorf("%s is an %s binary, not %s", file, arch, want)
	}
	return arch, nil
}

// entry is one file or directory of the layer; parent directories are added for it.
type entry struct {
	path string
	mode int64
	data []byte
	dir  bool
}

// layerTar is the layer's tar: entries and their parent directories (mode 0755), sorted by name,
// owned by 0:0, all with mtime, in USTAR format (no PAX records, no user or group names).
func layerTar(entries []entry, mtime time.Time) ([]byte, error) {
	all := map[string]entry{}
	for _, e := range entries {
		p := strings.TrimPrefix(path.Clean(e.path), "/")
		if _, dup := all[p]; dup {
			return nil, fmt.Errorf("%s twice in the layer", e.path)
		}
		e.path = p
		all[p] = e
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = entry{path: d, mode: 0o755, dir: true}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	// Sorting the names without the directories' trailing slash puts every directory before its
	// contents ("a" < "a/b"), the order a tar extractor needs.
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		e := all[p]
		h := &tar.Header{
			Name:    p,
			Mode:    e.mode,
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeLayout writes img as the one image of a new OCI layout at dir. An existing dir is replaced
// only if it is empty or an OCI layout (a previous run), and only once the new one is complete.
func writeLayout(dir string, img v1.Image, tag string) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("%s exists and is not an OCI layout: not replacing it", dir)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{refNameAnnot: tag}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return err
	}
	// MkdirTemp made the directory 0700 and layout.Write some blobs 0600; a layout is for others
	// to read too (skopeo, a registry's importer, a CI step running as another user).
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}
