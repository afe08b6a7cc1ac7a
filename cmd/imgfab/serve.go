package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/cache"
	"github.com/imgfab/imgfab/layers"
	"github.com/imgfab/imgfab/publish/oci"
	"github.com/imgfab/imgfab/serve"
	"github.com/imgfab/imgfab/spec"
)

const serveHelp = `Usage: imgfab serve --store REGISTRY/REPO [--listen :8080] [--cache DIR] [--token-file FILE] [flags]

The image factory as a service (docs/serve.md): classes are posted, disk images are built on
first request and stored in the OCI repository REGISTRY/REPO, then served from it. Any number of
replicas may share one store: builds are byte-reproducible, so racing replicas store the same
bytes. A replica keeps nothing but its scratch cache.

API:
  POST /classes                       one class of a class file (YAML) → {"id": sha256}   (token)
  GET  /classes/{id}                  the class, its source digests and its artifacts
  POST /classes/{id}/refresh          re-resolve the sources; rebuild what a moved base changes (token)
  GET  /images/{id}/{arch}/{file}     the disk: built on first request (?wait=false: 202 + status URL)
  GET  /builds/{key}                  a build's state
  GET  /blobs/sha256/{hex}            any stored artifact by digest (older builds too)
  GET  /healthz, /readyz, /metrics    liveness, store reachability, Prometheus metrics

arch: amd64, arm64. file: ` + "%s" + `.

Examples:
  imgfab serve --store registry.example.com/imgfab/factory --token-file /run/secrets/token
  curl -H "Authorization: Bearer $TOKEN" --data-binary @web.yaml http://factory/classes
  curl -fLO http://factory/images/$ID/amd64/disk.qcow2

Flags:
`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	store := fl.String("store", "", "the OCI repository that holds classes and artifacts (REGISTRY/REPO)")
	listen := fl.String("listen", ":8080", "address to listen on")
	cacheDir := fl.String("cache", "", "scratch directory: builds, layer blobs, artifacts served (default $XDG_CACHE_HOME/imgfab/serve)")
	insecure := fl.Bool("insecure", false, "plain-HTTP registries (the store and class sources), as for push oci")
	tokenFile := fl.String("token-file", "", "file holding the bearer token that writes (POST) need; without it writes are refused")
	maxBuilds := fl.Int("max-builds", 1, "builds at once on this replica")
	maxQueue := fl.Int("max-queue", 16, "builds that may wait for a slot before requests for new artifacts get 503")
	watch := fl.Duration("watch", 0, "refresh every class's sources at this interval (0: only on POST /classes/{id}/refresh)")
	pinTTL := fl.Duration("pin-ttl", 10*time.Second, "how long a class's source digest is trusted from memory before the store is read again")
	buildTimeout := fl.Duration("build-timeout", 30*time.Minute, "the longest one build may take")
	drain := fl.Duration("drain", 4*time.Minute, "on SIGTERM or SIGINT: stop taking requests and give those in flight (and the builds they wait for) this long to finish")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *help {
		fmt.Fprintf(stdout, serveHelp+fl.FlagUsages(), strings.Join(serve.Files, ", "))
		return errHelp
	}
	if fl.NArg() != 0 {
		return usagef("serve takes no arguments, got %q", fl.Args())
	}
	if *store == "" {
		return usagef("--store REGISTRY/REPO is required")
	}
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("serve: --token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); len(token) < 16 {
			return fmt.Errorf("serve: --token-file %s: the token is %d characters, want at least 16", *tokenFile, len(token))
		}
	}
	if *cacheDir == "" {
		d, err := cache.DefaultDir()
		if err != nil {
			return err
		}
		*cacheDir = filepath.Join(d, "serve")
	}
	blobs, err := cache.Open(filepath.Join(*cacheDir, "layers"))
	if err != nil {
		return fmt.Errorf("serve: cache: %w", err)
	}
	st, err := serve.OpenStore(ctx, *store, *insecure, nil, nil)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := serve.New(serve.Config{Store: st, Builder: &serveBuilder{insecure: *insecure, blobs: blobs},
		CacheDir: *cacheDir, MaxBuilds: *maxBuilds, MaxQueue: *maxQueue, Token: token, PinTTL: *pinTTL,
		BuildTimeout: *buildTimeout, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if *watch > 0 {
		go srv.Watch(ctx, *watch)
	}
	drainFor.Store(int64(*drain + 2*time.Second))
	log.Info("serving", "addr", ln.Addr().String(), "store", *store, "cache", *cacheDir, "version", buildID(),
		"max_builds", *maxBuilds, "writes", token != "")
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		log.Info("draining", "for", drain.String())
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *drain)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("drain cut short", "err", err.Error())
		}
		log.Info("stopped")
		return nil
	}
}

// serveBuilder is serve.Builder on imgfab's class files and builds.
type serveBuilder struct {
	insecure bool
	blobs    *cache.Store
}

// serviceClassName is the name a posted class gets in its class file (and so in its canonical
// form): the URL names a class by its id, not by a name.
const serviceClassName = "class"

// parse reads a posted class: the YAML of one class of a class file, as a file of that one
// class. What names a file of the client's (local sources, layers, file sources, keys) or asks
// for what the service does itself (outputs, publish) is refused.
func (b *serveBuilder) parse(body []byte) (*spec.Class, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("YAML: %v", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("want one class: a YAML mapping with from:, kernel:, users:, … as in a class file's classes.NAME")
	}
	file := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "classes"},
		{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: serviceClassName}, doc.Content[0]}},
	}}
	data, err := yaml.Marshal(file)
	if err != nil {
		return nil, err
	}
	f, err := spec.Parse("class.yaml", data)
	if err != nil {
		return nil, err
	}
	if len(f.Classes) != 1 {
		return nil, errors.New("want one class")
	}
	c := f.Classes[0]
	switch {
	case strings.HasPrefix(c.From, "oci:") || strings.HasPrefix(c.From, "docker-archive:"):
		return nil, fmt.Errorf("from %s: the service reads no files of yours: name a registry image (REGISTRY/REPO:TAG)", c.From)
	case len(c.Layers) > 0:
		return nil, errors.New("layers: the service reads no files of yours; put the files in the image, or use files: with content")
	case len(c.Outputs) > 0:
		return nil, errors.New("outputs: the request's URL names the file (/images/{id}/{arch}/disk.qcow2, …); leave outputs out")
	case len(c.Publish) > 0:
		return nil, errors.New("publish: the service stores artifacts in its registry; leave publish out")
	case c.SecureBoot != nil:
		return nil, errors.New("secure_boot: the service reads no files of yours and signs with no key of its host's; leave secure_boot out")
	}
	for _, fe := range c.Files {
		if fe.SourceAbs != "" {
			return nil, fmt.Errorf("files: %s: source %s: the service reads no files of yours; give the content", fe.Path, fe.Source)
		}
	}
	return c, nil
}

func (b *serveBuilder) Class(body []byte) ([]byte, error) {
	c, err := b.parse(body)
	if err != nil {
		return nil, err
	}
	if _, err := classPlan(c, spec.Platform{OS: "linux", Arch: "amd64"}); err != nil {
		return nil, err
	}
	return c.Canonical(), nil
}

func (b *serveBuilder) platform(c *spec.Class, arch string) spec.Platform {
	for _, p := range c.Platforms {
		if p.Arch == arch {
			return p
		}
	}
	return spec.Platform{OS: "linux", Arch: arch}
}

func (b *serveBuilder) Resolve(ctx context.Context, body []byte, arch string) (string, error) {
	c, err := b.parse(body)
	if err != nil {
		return "", err
	}
	img, err := layers.Resolve(ctx, c.FromAbs, resolveOpts(b.platform(c, arch), b.insecure, nil, false)...)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

func (b *serveBuilder) Build(ctx context.Context, body []byte, arch, source, path string) (string, int64, error) {
	c, err := b.parse(body)
	if err != nil {
		return "", 0, err
	}
	pl := b.platform(c, arch)
	plan, err := classPlan(c, pl)
	if err != nil {
		return "", 0, err
	}
	h, err := v1.NewHash(source)
	if err != nil {
		return "", 0, err
	}
	plan.Outputs = []assemble.Output{{Path: path}}
	plan.Insecure = b.insecure
	ctx = layers.WithOptions(ctx, append(resolveOpts(pl, b.insecure, b.blobs, false)[1:], layers.WithManifest(h))...)
	res, err := assemble.Run(ctx, plan)
	if err != nil {
		return "", 0, err
	}
	return res.Outputs[0].SHA256, res.Outputs[0].Bytes, nil
}

func (b *serveBuilder) Version() string { return buildID() }

func (b *serveBuilder) PushContainerDisk(ctx context.Context, path, arch, ref string) (string, error) {
	a, closeDisk, err := openArtifact(ctx, path)
	if err != nil {
		return "", err
	}
	defer closeDisk()
	a.Arch = arch
	t := &oci.Target{Ref: ref, Insecure: b.insecure, TempDir: filepath.Dir(path)}
	res, err := t.Push(ctx, a, nil)
	if err != nil {
		return "", err
	}
	return res.ID, nil
}
