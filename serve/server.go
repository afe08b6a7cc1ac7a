package serve

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// MaxClassBytes bounds a posted class (the YAML of one class) and a stored one.
const MaxClassBytes = 256 << 10

// Arches are the architectures an artifact is built for.
var Arches = []string{"amd64", "arm64"}

// Files are the artifact names a client asks for, each a disk format imgfab writes (the name's
// extension picks it, as for `imgfab build -o`).
var Files = []string{"disk.raw", "disk.qcow2", "disk.vmdk", "disk.vhd", "disk.tar.gz", "disk.raw.zst", "disk.raw.xz", "disk.raw.gz"}

// Builder is what the service needs of imgfab: parsing a class, resolving its source, building.
type Builder interface {
	// Class checks a posted class (the YAML of one class of a class file) and returns its
	// canonical form, whose sha256 is the class id. Its error is the client's: a 400.
	Class(body []byte) ([]byte, error)
	// Resolve is the manifest digest ("sha256:…") the class's source resolves to on arch now.
	Resolve(ctx context.Context, class []byte, arch string) (string, error)
	// Build builds the class for arch from the source manifest digest into the file path (its
	// extension is the format) and returns the file's sha256 (hex) and size.
	Build(ctx context.Context, class []byte, arch, source, path string) (sha string, size int64, err error)
	// Version names the imgfab that builds; it is part of every artifact key.
	Version() string
	// PushContainerDisk pushes the qcow2 file at path as a KubeVirt containerDisk image for arch
	// to ref (REGISTRY/REPO:TAG, the store's repository) and returns its manifest digest. The
	// image is reproducible: the same file gives the same digest.
	PushContainerDisk(ctx context.Context, path, arch, ref string) (string, error)
}

// Config configures a Server.
type Config struct {
	Store    *Store
	Builder  Builder
	CacheDir string // scratch: builds in progress and downloaded artifacts
	// MaxBuilds builds run at once (default 1); MaxQueue more may wait (default 16) before a
	// request for a new artifact is answered 503 with Retry-After.
	MaxBuilds, MaxQueue int
	// Token is the bearer token of writes (POST); "" refuses every write.
	Token string
	// PinTTL is how long a class's recorded source digest is trusted from memory before it is
	// read from the store again (a refresh on another replica shows after at most this).
	PinTTL time.Duration
	// BuildTimeout bounds one build (default 30 minutes).
	BuildTimeout time.Duration
	Log          *slog.Logger // nil: discard
}

// Server is the HTTP service. Its only state is a cache of what the store holds.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	sem     chan struct{}

	mu      sync.Mutex
	builds  map[string]*build // in progress, by artifact key
	recent  map[string]*build // finished on this replica (status), by key
	classes map[string][]byte // id → the class as posted (immutable)
	pins    map[string]pinEntry
	arts    map[string]Artifact // key → stored artifact (immutable)
	queued  int

	fetch singleflight.Group // downloads of blobs into the cache
}

type pinEntry struct {
	source string
	at     time.Time
}

// build is one artifact being made.
type build struct {
	key     string
	done    chan struct{}
	art     Artifact
	err     error
	started time.Time
}

// New makes a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Builder == nil || cfg.CacheDir == "" {
		return nil, errors.New("serve: a store, a builder and a cache directory are needed")
	}
	if cfg.MaxBuilds <= 0 {
		cfg.MaxBuilds = 1
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 16
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = 30 * time.Minute
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"blobs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cfg.CacheDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("serve: cache: %w", err)
		}
	}
	// Builds a killed process left behind are never resumed.
	if ents, err := os.ReadDir(filepath.Join(cfg.CacheDir, "tmp")); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(cfg.CacheDir, "tmp", e.Name()))
		}
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics(), sem: make(chan struct{}, cfg.MaxBuilds),
		builds: map[string]*build{}, recent: map[string]*build{}, classes: map[string][]byte{},
		pins: map[string]pinEntry{}, arts: map[string]Artifact{}}
	return s, nil
}

// apiError is an error with its HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, a ...any) error {
	return &apiError{status, fmt.Sprintf(format, a...)}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// fail writes err as a JSON error: its status when it has one, else 500 (logged).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		status = ae.status
	case errors.As(err, &mbe):
		status = http.StatusRequestEntityTooLarge
		err = fmt.Errorf("request body over %d bytes", mbe.Limit)
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err.Error())
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "10")
	}
	writeJSON(w, status, map[string]any{"error": err.Error(), "status": status})
}

// Handler is the service's HTTP API (docs/serve.md).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /classes", s.postClass)
	mux.HandleFunc("GET /classes/{id}", s.getClass)
	mux.HandleFunc("POST /classes/{id}/refresh", s.postRefresh)
	mux.HandleFunc("GET /images/{id}/{arch}/containerdisk", s.getContainerDisk)
	mux.HandleFunc("GET /images/{id}/{arch}/{file}", s.getImage) // GET also answers HEAD
	mux.HandleFunc("GET /builds/{key}", s.getBuild)
	mux.HandleFunc("GET /blobs/sha256/{hex}", s.getBlob)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.getReady)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return s.guard(mux)
}

// guard refuses what the router would otherwise redirect or misread (a path with "." or ".."
// segments, encoded or not; encoded slashes) and logs every request.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.n,
				"ms", time.Since(start).Milliseconds())
			s.metrics.requests.WithLabelValues(fmt.Sprint(sw.status)).Inc()
		}()
		raw := r.URL.EscapedPath()
		dec, err := url.PathUnescape(raw)
		if err != nil || strings.Contains(strings.ToLower(raw), "%2f") {
			s.fail(sw, r, errorf(http.StatusBadRequest, "malformed path"))
			return
		}
		for _, seg := range strings.Split(dec, "/") {
			if seg == "." || seg == ".." {
				s.fail(sw, r, errorf(http.StatusBadRequest, "path %q: no . or .. segments", dec))
				return
			}
		}
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// authorized checks a write's bearer token.
func (s *Server) authorized(r *http.Request) error {
	if s.cfg.Token == "" {
		return errorf(http.StatusForbidden, "writes are disabled: the service was started without --token-file")
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return errorf(http.StatusUnauthorized, "a write needs Authorization: Bearer <token>")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) != 1 {
		return errorf(http.StatusForbidden, "wrong token")
	}
	return nil
}

func (s *Server) postClass(w http.ResponseWriter, r *http.Request) {
	if err := s.authorized(r); err != nil {
		s.fail(w, r, err)
		return
	}
	if r.ContentLength > MaxClassBytes {
		s.fail(w, r, errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes (%d)", MaxClassBytes, r.ContentLength))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxClassBytes))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	canon, err := s.cfg.Builder.Class(body)
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadRequest, "class: %v", err))
		return
	}
	id := sha(canon)
	if _, err := s.cfg.Store.Class(r.Context(), id); errors.Is(err, ErrNotFound) {
		if err := s.cfg.Store.PutClass(r.Context(), id, body); err != nil {
			s.fail(w, r, errorf(http.StatusBadGateway, "%v", err))
			return
		}
		s.log.Info("class stored", "class", id)
	} else if err != nil {
		s.fail(w, r, errorf(http.StatusBadGateway, "%v", err))
		return
	}
	w.Header().Set("Location", "/classes/"+id)
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// class is a class's canonical form, from memory or the store.
func (s *Server) class(ctx context.Context, id string) ([]byte, error) {
	if !isID(id) {
		return nil, errorf(http.StatusBadRequest, "class id %q: want 64 lower-case hex digits", id)
	}
	s.mu.Lock()
	c, ok := s.classes[id]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := s.cfg.Store.Class(ctx, id)
	if err != nil {
		return nil, err
	}
	canon, err := s.cfg.Builder.Class(c)
	if err != nil || sha(canon) != id {
		return nil, fmt.Errorf("store: class %s: what it holds is not that class (%v)", id, err)
	}
	s.mu.Lock()
	s.classes[id] = c
	s.mu.Unlock()
	return c, nil
}

// knownClass is class with a missing class as a 404.
func (s *Server) knownClass(ctx context.Context, id string) ([]byte, error) {
	c, err := s.class(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "no class %s: POST it to /classes first", id)
	}
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			err = errorf(http.StatusBadGateway, "%v", err)
		}
	}
	return c, err
}

func (s *Server) getClass(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, err := s.knownClass(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	arts, err := s.cfg.Store.Artifacts(r.Context(), id)
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadGateway, "%v", err))
		return
	}
	pins := map[string]string{}
	for _, a := range Arches {
		if p, err := s.cfg.Store.Pin(r.Context(), id, a); err == nil {
			pins[a] = p
		}
	}
	if arts == nil {
		arts = []Artifact{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "class": string(c), "sources": pins, "artifacts": arts})
}

func (s *Server) getReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		s.fail(w, r, errorf(http.StatusServiceUnavailable, "store: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// pin is the source a class builds from on arch: the recorded one (PinTTL in memory), or, on
// first use, what the source resolves to now, recorded.
func (s *Server) pin(ctx context.Context, id string, class []byte, arch string) (string, error) {
	k := id + "/" + arch
	s.mu.Lock()
	e, ok := s.pins[k]
	s.mu.Unlock()
	if ok && time.Since(e.at) < s.cfg.PinTTL {
		return e.source, nil
	}
	src, err := s.cfg.Store.Pin(ctx, id, arch)
	if errors.Is(err, ErrNotFound) {
		if src, err = s.cfg.Builder.Resolve(ctx, class, arch); err != nil {
			return "", errorf(http.StatusBadGateway, "resolving the class's source for %s: %v", arch, err)
		}
		if err = s.cfg.Store.PutPin(ctx, id, arch, src); err != nil {
			return "", errorf(http.StatusBadGateway, "%v", err)
		}
	} else if err != nil {
		return "", errorf(http.StatusBadGateway, "%v", err)
	}
	s.mu.Lock()
	s.pins[k] = pinEntry{src, time.Now()}
	s.mu.Unlock()
	return src, nil
}

// Key is an artifact's key: the sha256 of what its bytes depend on.
func Key(class, arch, source, file, version string) string {
	h := sha256.New()
	for _, f := range []string{"imgfab-artifact-v1", class, arch, source, file, version} {
		fmt.Fprintf(h, "%d\x00%s\x00", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// target is one requested artifact.
type target struct {
	id, arch, file, source, key string
	class                       []byte
}

func (s *Server) target(ctx context.Context, id, arch, file string) (target, error) {
	t := target{id: id, arch: arch, file: file}
	if !slices.Contains(Arches, arch) {
		return t, errorf(http.StatusNotFound, "architecture %q: want one of %s", arch, strings.Join(Arches, ", "))
	}
	if !slices.Contains(Files, file) {
		return t, errorf(http.StatusNotFound, "file %q: want one of %s", file, strings.Join(Files, ", "))
	}
	var err error
	if t.class, err = s.knownClass(ctx, id); err != nil {
		return t, err
	}
	if t.source, err = s.pin(ctx, id, t.class, arch); err != nil {
		return t, err
	}
	t.key = Key(id, arch, t.source, file, s.cfg.Builder.Version())
	return t, nil
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	t, err := s.target(r.Context(), r.PathValue("id"), r.PathValue("arch"), r.PathValue("file"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.stored(r.Context(), t.key)
	if err == nil {
		s.metrics.cacheHits.Inc()
		s.serveArtifact(w, r, a)
		return
	}
	if !errors.Is(err, ErrNotFound) {
		s.fail(w, r, errorf(http.StatusBadGateway, "%v", err))
		return
	}
	b, err := s.start(r.Context(), t)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if r.URL.Query().Get("wait") == "false" {
		w.Header().Set("Location", "/builds/"+t.key)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "/builds/" + t.key, "key": t.key})
		return
	}
	select {
	case <-b.done:
	case <-r.Context().Done():
		return // the build goes on for whoever asks next
	}
	if b.err != nil {
		s.fail(w, r, fmt.Errorf("build %s: %w", t.key, b.err))
		return
	}
	s.serveArtifact(w, r, b.art)
}

// stored is the stored artifact of key (remembered: an artifact never changes).
func (s *Server) stored(ctx context.Context, key string) (Artifact, error) {
	s.mu.Lock()
	a, ok := s.arts[key]
	s.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := s.cfg.Store.Artifact(ctx, key)
	if err != nil {
		return a, err
	}
	s.mu.Lock()
	s.arts[key] = a
	s.mu.Unlock()
	return a, nil
}

// serveArtifact answers with the artifact's bytes from the local cache (fetched from the store
// once): ETag its sha256, Range and HEAD as http.ServeContent does them.
func (s *Server) serveArtifact(w http.ResponseWriter, r *http.Request, a Artifact) {
	f, err := s.local(r.Context(), a.SHA256)
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadGateway, "%v", err))
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"sha256:`+a.SHA256+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+a.File+`"`)
	w.Header().Set("X-Imgfab-Key", a.Key)
	w.Header().Set("X-Imgfab-Source", a.Source)
	cw := &countWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", time.Time{}, f)
	s.metrics.bytesServed.Add(float64(cw.n))
}

type countWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// local opens the cached copy of the blob sha, downloading it from the store first if needed
// (once for concurrent requests; checked against its digest; renamed into place whole).
func (s *Server) local(ctx context.Context, shaHex string) (*os.File, error) {
	path := filepath.Join(s.cfg.CacheDir, "blobs", shaHex)
	if f, err := os.Open(path); err == nil {
		return f, nil
	}
	_, err, _ := s.fetch.Do(shaHex, func() (any, error) {
		if _, err := os.Stat(path); err == nil {
			return nil, nil
		}
		rc, err := s.cfg.Store.Blob(context.WithoutCancel(ctx), shaHex)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		tmp, err := os.CreateTemp(filepath.Join(s.cfg.CacheDir, "tmp"), "blob-*")
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(tmp, h), rc); err != nil {
			tmp.Close()
			return nil, fmt.Errorf("downloading sha256:%s: %w", shaHex, err)
		}
		if err := tmp.Close(); err != nil {
			return nil, err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != shaHex {
			return nil, fmt.Errorf("the store's blob sha256:%s hashes to %s", shaHex, got)
		}
		return nil, os.Rename(tmp.Name(), path)
	})
	if err != nil {
		return nil, err
	}
	return os.Open(path)
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) {
	shaHex := r.PathValue("hex")
	if !isID(shaHex) {
		s.fail(w, r, errorf(http.StatusBadRequest, "digest %q: want 64 lower-case hex digits", shaHex))
		return
	}
	f, err := s.local(r.Context(), shaHex)
	if errors.Is(err, ErrNotFound) {
		s.fail(w, r, errorf(http.StatusNotFound, "no blob sha256:%s in the store", shaHex))
		return
	}
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadGateway, "%v", err))
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"sha256:`+shaHex+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// start returns the build of t: the one in progress, or a new one (503 when the queue is full).
// The build runs detached from the request: a client that goes away does not stop it.
func (s *Server) start(ctx context.Context, t target) (*build, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.builds[t.key]; ok {
		return b, nil
	}
	if s.queued >= s.cfg.MaxQueue {
		s.metrics.builds.WithLabelValues("refused").Inc()
		return nil, errorf(http.StatusServiceUnavailable, "build queue full (%d builds waiting for a slot): try again later", s.queued)
	}
	b := &build{key: t.key, done: make(chan struct{}), started: time.Now()}
	s.builds[t.key] = b
	s.queued++
	s.metrics.queue.Set(float64(s.queued))
	go s.run(context.WithoutCancel(ctx), t, b)
	return b, nil
}

// run makes one artifact: waits for a build slot, builds into the scratch cache, uploads it
// (blob, then manifest), keeps the file as the cached blob.
func (s *Server) run(ctx context.Context, t target, b *build) {
	defer close(b.done)
	defer func() {
		s.mu.Lock()
		delete(s.builds, t.key)
		s.recent[t.key] = b
		s.mu.Unlock()
	}()
	s.sem <- struct{}{}
	s.mu.Lock()
	s.queued--
	s.metrics.queue.Set(float64(s.queued))
	s.mu.Unlock()
	s.metrics.running.Inc()
	defer func() { <-s.sem; s.metrics.running.Dec() }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BuildTimeout)
	defer cancel()
	// Another replica may have stored it while this one waited.
	if a, err := s.cfg.Store.Artifact(ctx, t.key); err == nil {
		b.art = a
		s.metrics.builds.WithLabelValues("stored-elsewhere").Inc()
		return
	}
	log := s.log.With("key", t.key, "class", t.id, "arch", t.arch, "file", t.file, "source", t.source)
	log.Info("build started")
	dir, err := os.MkdirTemp(filepath.Join(s.cfg.CacheDir, "tmp"), "build-")
	if err != nil {
		b.err = err
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, t.file)
	shaHex, size, err := s.cfg.Builder.Build(ctx, t.class, t.arch, t.source, path)
	if err != nil {
		b.err = err
		s.metrics.builds.WithLabelValues("failed").Inc()
		log.Error("build failed", "err", err.Error(), "s", time.Since(b.started).Seconds())
		return
	}
	a := Artifact{Key: t.key, Class: t.id, Arch: t.arch, File: t.file, Source: t.source, SHA256: shaHex, Size: size, Digest: "sha256:" + shaHex}
	if err := s.cfg.Store.PutArtifact(ctx, a, path, formatOf(t.file)); err != nil {
		b.err = err
		s.metrics.builds.WithLabelValues("failed").Inc()
		log.Error("storing the artifact failed", "err", err.Error())
		return
	}
	if err := os.Rename(path, filepath.Join(s.cfg.CacheDir, "blobs", shaHex)); err != nil {
		log.Warn("keeping the built file in the cache", "err", err.Error())
	}
	b.art = a
	s.mu.Lock()
	s.arts[t.key] = a
	s.mu.Unlock()
	s.metrics.builds.WithLabelValues("built").Inc()
	log.Info("build stored", "sha256", shaHex, "bytes", size, "s", time.Since(b.started).Seconds())
}

// formatOf is the media type suffix of a file name: its extension(s) without "disk.".
func formatOf(file string) string { return strings.TrimPrefix(file, "disk.") }

func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !isID(key) {
		s.fail(w, r, errorf(http.StatusBadRequest, "build key %q: want 64 lower-case hex digits", key))
		return
	}
	s.mu.Lock()
	b, running := s.builds[key]
	if !running {
		b = s.recent[key]
	}
	s.mu.Unlock()
	switch {
	case running:
		writeJSON(w, http.StatusOK, map[string]any{"key": key, "state": "building", "seconds": int(time.Since(b.started).Seconds())})
		return
	case b != nil && b.err != nil:
		writeJSON(w, http.StatusOK, map[string]any{"key": key, "state": "failed", "error": b.err.Error()})
		return
	}
	a, err := s.stored(r.Context(), key)
	if errors.Is(err, ErrNotFound) {
		s.fail(w, r, errorf(http.StatusNotFound, "no build %s on this replica and no such artifact in the store", key))
		return
	}
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadGateway, "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": key, "state": "done", "artifact": a,
		"url": "/images/" + a.Class + "/" + a.Arch + "/" + a.File, "blob": "/blobs/sha256/" + a.SHA256})
}
