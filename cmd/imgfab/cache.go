package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/cache"
	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/layers"
	"github.com/imgfab/imgfab/secureboot"
	"github.com/imgfab/imgfab/spec"
)

// addStoreFlags adds build's flags of the content store and the lock (used with -f).
func addStoreFlags(fl *pflag.FlagSet) {
	fl.String("cache", "", "with -f: the local cache of blobs and finished outputs (default $XDG_CACHE_HOME/imgfab, else ~/.cache/imgfab)")
	fl.Bool("locked", false, "with -f: every source must resolve to the digests of imgfab.lock beside the file (see imgfab lock)")
	fl.Bool("offline", false, "with -f: never touch the network; build from the cache only")
	fl.Bool("no-cache", false, "with -f: neither reuse nor keep finished outputs (blobs still go through the cache)")
}

// storeRun is the content store side of `build -f`: where each class's source resolves from,
// the lock it is checked against, and the finished-output cache.
type storeRun struct {
	st                         *cache.Store
	lock                       *lockFile // --locked
	lockPath                   string
	offline, noCache, insecure bool
	stderr                     io.Writer
}

func newStoreRun(fl *pflag.FlagSet, path string, insecure bool, stderr io.Writer) (*storeRun, error) {
	dir, _ := fl.GetString("cache")
	locked, _ := fl.GetBool("locked")
	offline, _ := fl.GetBool("offline")
	noCache, _ := fl.GetBool("no-cache")
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	r := &storeRun{st: st, offline: offline, noCache: noCache, insecure: insecure, stderr: stderr}
	if locked {
		r.lockPath = lockPath(path)
		if r.lock, err = readLock(r.lockPath); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, usagef("--locked: %s does not exist: run imgfab lock -f %s", r.lockPath, path)
			}
			return nil, err
		}
	}
	return r, nil
}

// pins are the digests r's source is built from: the lock's (checked against what the source
// resolves to now, unless offline), else what it resolves to.
func (s *storeRun) pins(ctx context.Context, r *classRun) (layers.Pins, error) {
	name, pl := r.class.Name, r.platform.String() // the caller's errors name them
	var locked lockEntry
	if s.lock != nil {
		e, ok := s.lock.entry(name, pl)
		if !ok {
			return layers.Pins{}, fmt.Errorf("not in %s: run imgfab lock", s.lockPath)
		}
		if e.Source != r.class.From {
			return layers.Pins{}, fmt.Errorf("from %s, but %s locks %s: run imgfab lock", r.class.From, s.lockPath, e.Source)
		}
		if s.offline {
			return layers.Pins{Index: e.Index, Manifest: e.Manifest, Config: e.Config, Layers: e.Layers}, nil
		}
		locked = e
	}
	img, err := layers.Resolve(ctx, r.class.FromAbs, resolveOpts(r.platform, s.insecure, s.st, s.offline)...)
	if err != nil {
		return layers.Pins{}, fmt.Errorf("resolving %s: %w", r.class.From, err)
	}
	p, err := layers.PinsOf(img)
	if err != nil {
		return p, err
	}
	if s.lock != nil {
		want, got, what := locked.Manifest, p.Manifest, "manifest"
		if locked.Index != "" || p.Index != "" {
			want, got, what = locked.Index, p.Index, "index"
		}
		if want != got || locked.Manifest != p.Manifest && got == "" {
			return p, fmt.Errorf("%s no longer resolves to the locked digest: %s has %s %s, the source now %s (run imgfab lock to take it)",
				r.class.From, s.lockPath, what, orNone(want), orNone(got))
		}
	}
	return p, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// run builds r, or copies its outputs from the cache when a build with the same key made them.
func (s *storeRun) run(ctx context.Context, r *classRun) (assemble.Result, bool, error) {
	pins, err := s.pins(ctx, r)
	if err != nil {
		return assemble.Result{}, false, err
	}
	h, err := v1.NewHash(pins.Manifest)
	if err != nil {
		return assemble.Result{}, false, err
	}
	// assemble.Run resolves the source through the store, to the manifest of the key.
	bctx := layers.WithOptions(ctx, append(resolveOpts(r.platform, s.insecure, s.st, s.offline)[1:], layers.WithManifest(h))...)
	keep := !s.noCache
	for _, o := range r.plan.Outputs {
		if o.Path == "-" {
			keep = false
		}
	}
	var key string
	if keep {
		if key, err = outputKey(r, pins); err != nil {
			return assemble.Result{}, false, err
		}
		if res, ok := s.cached(key, r); ok {
			return res, true, nil
		}
	} else if err := classSigning(r, func(k, v string) {}); err != nil { // a key that cannot be read: at its line
		return assemble.Result{}, false, err
	}
	res, err := assemble.Run(bctx, r.plan)
	if err != nil || !keep {
		return res, false, err
	}
	if err := s.keep(key, r, &res); err != nil {
		fmt.Fprintf(s.stderr, "imgfab build: %s: warning: outputs not kept in the cache: %v\n", r.class.Name, err)
	}
	return res, false, nil
}

// cached copies the outputs of key's record to r's output paths, each checked against its
// sha256 as it is copied; ok is false (and nothing is left) when any is missing or wrong.
func (s *storeRun) cached(key string, r *classRun) (assemble.Result, bool) {
	rec, ok, err := s.st.GetRecord(key)
	if err != nil || !ok || len(rec.Outputs) != len(r.plan.Outputs) {
		return assemble.Result{}, false
	}
	var res assemble.Result
	if json.Unmarshal(rec.Result, &res) != nil || len(res.Outputs) != len(rec.Outputs) {
		return assemble.Result{}, false
	}
	outs := make([]*diskfmt.Output, len(rec.Outputs))
	abort := func() {
		for _, o := range outs {
			if o != nil {
				o.Abort()
			}
		}
	}
	for i, ro := range rec.Outputs {
		h, err := v1.NewHash(ro.Digest)
		if err != nil || "sha256:"+res.Outputs[i].SHA256 != ro.Digest {
			abort()
			return assemble.Result{}, false
		}
		path := r.plan.Outputs[i].Path
		if r.plan.Progress != nil {
			r.plan.Progress(assemble.Event{Stage: "cached", Item: path, Total: ro.Size})
		}
		o, err := diskfmt.CreateOutput(path)
		if err != nil {
			abort()
			return assemble.Result{}, false
		}
		outs[i] = o
		if _, err := s.st.CopyOut(h, o.File); err != nil {
			fmt.Fprintf(s.stderr, "imgfab build: %s: warning: cached %s: %v; building\n", r.class.Name, path, err)
			abort()
			return assemble.Result{}, false
		}
		res.Outputs[i].Path = path
	}
	for i, o := range outs {
		if err := o.Commit(); err != nil {
			for _, o := range outs[i:] {
				o.Abort()
			}
			return assemble.Result{}, false
		}
	}
	for _, ro := range rec.Outputs {
		if h, err := v1.NewHash(ro.Digest); err == nil {
			cache.Touch(s.st.BlobPath(h))
		}
	}
	return res, true
}

// keep stores r's outputs and result under key.
func (s *storeRun) keep(key string, r *classRun, res *assemble.Result) error {
	rec := &cache.Record{Key: key, Class: r.class.Name, Platform: r.platform.String()}
	for _, o := range res.Outputs {
		h, n, err := s.st.PutFile(o.Path, o.SHA256)
		if err != nil {
			return err
		}
		rec.Outputs = append(rec.Outputs, cache.RecordOutput{Path: o.Path, Digest: h.String(), Size: n})
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	rec.Result = b
	return s.st.PutRecord(rec)
}

// outputKey is the key of a class/platform's finished outputs: the sha256 of everything their
// bytes depend on: the class's canonical form, the platform, the image's digests, imgfab's
// build, each output's format and compression, the epoch, and the contents of the local inputs
// the file names (layers, file sources, secure_boot's files: see signingKey).
func outputKey(r *classRun, pins layers.Pins) (string, error) {
	h := sha256.New()
	field := func(k, v string) { fmt.Fprintf(h, "%s\x00%d\x00%s\x00", k, len(v), v) }
	field("imgfab-output-key", "1")
	field("imgfab", buildID())
	field("class", string(r.class.Canonical()))
	field("platform", r.platform.String())
	field("manifest", pins.Manifest)
	field("config", pins.Config)
	field("layers", strings.Join(pins.Layers, ","))
	for _, o := range r.plan.Outputs {
		field("output", o.Path+"\x00"+o.Format+"\x00"+o.Compress)
	}
	if e := r.plan.SourceDateEpoch; e != nil {
		field("epoch", fmt.Sprint(*e))
	}
	for _, l := range r.class.Layers {
		field("layer", l.Path)
		if err := hashTree(h, l.Abs); err != nil {
			return "", fmt.Errorf("layer %s: %w", l.Path, err)
		}
	}
	for _, f := range r.class.Files {
		if f.SourceAbs != "" {
			field("file", f.Path)
			if err := hashTree(h, f.SourceAbs); err != nil {
				return "", fmt.Errorf("file source %s: %w", f.Source, err)
			}
		}
	}
	if err := classSigning(r, field); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// classSigning passes signingKey's fields of r's secure_boot to field; its error names
// secure_boot's position.
func classSigning(r *classRun, field func(k, v string)) error {
	o := r.plan.Sign
	if o == nil {
		return nil
	}
	if err := signingKey(field, o); err != nil {
		if sb := r.class.SecureBoot; sb != nil {
			return spec.Errorf(sb.Pos, "classes."+r.class.Name+".secure_boot", "%v", err)
		}
		return err
	}
	return nil
}

// signingKey adds what signed outputs depend on beyond the paths of the canonical form: the
// signing key's public half (the signatures are deterministic: the same key and binaries give
// the same bytes), the certificate's bytes (it is embedded in every signature) and the bytes of
// the .auth files put on the ESP to enroll. The private key is parsed to take its public half
// (checking it against the certificate, as the build will) and is never hashed, kept or shown.
func signingKey(field func(k, v string), o *assemble.SignOptions) error {
	s, err := secureboot.LoadSigner(o.Key, o.Cert)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&s.Key.PublicKey)
	if err != nil {
		return err
	}
	field("sign-public-key", string(pub))
	cert, err := os.ReadFile(o.Cert)
	if err != nil {
		return fmt.Errorf("reading signing certificate: %w", err)
	}
	field("sign-cert", string(cert))
	if o.Enroll == "" {
		return nil
	}
	// The files assemble puts on the ESP from --enroll-keys; a missing one is the build's error.
	for _, n := range []string{"PK.auth", "KEK.auth", "db.auth"} {
		b, err := os.ReadFile(filepath.Join(o.Enroll, n))
		if err != nil {
			return fmt.Errorf("enroll: %w (make the keys with `imgfab keys create DIR`)", err)
		}
		field("enroll", n+"\x00"+string(b))
	}
	return nil
}

// hashTree hashes a file or a directory tree: names, types, modes, owners, times, link targets
// and contents (conservative: anything ExtraLayer could read).
func hashTree(h hash.Hash, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var uid, gid uint32
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = st.Uid, st.Gid
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d:%d\x00%d\x00", rel, fi.Mode(), fi.Size(), uid, gid, fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00", t)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			return err
		}
		return nil
	})
}

var (
	buildIDOnce sync.Once
	buildIDStr  string
)

// buildID names the imgfab that builds: the version, and for a development build the VCS
// revision and the sha256 of the executable itself (a changed build gives changed bytes).
func buildID() string {
	buildIDOnce.Do(func() {
		buildIDStr = version
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
					buildIDStr += "+" + s.Value
				}
			}
		}
		if version == "dev" {
			if exe, err := os.Executable(); err == nil {
				if f, err := os.Open(exe); err == nil {
					h := sha256.New()
					io.Copy(h, f)
					f.Close()
					buildIDStr += "+exe:" + hex.EncodeToString(h.Sum(nil))
				}
			}
		}
	})
	return buildIDStr
}

const cacheHelp = `Usage: imgfab cache ls [--cache DIR] [--json]
       imgfab cache prune [--cache DIR] [--keep-days N]

The local cache (default $XDG_CACHE_HOME/imgfab, else ~/.cache/imgfab) is an OCI image layout
(oci-layout, index.json, blobs/sha256/…) that crane, skopeo and umoci read: every registry blob
a class file's build or imgfab lock fetched, index.json naming each reference fetched
(org.opencontainers.image.ref.name), and the finished outputs of class-file builds (records in
imgfab-outputs/KEY.json, the outputs themselves as blobs). docs/CLASSFILE.md describes it.

  ls     every reference, output record and blob: kind, name or digest, size, last use
  prune  remove output records, references and blobs not used for --keep-days days (default
         30); a blob that a kept reference or record refers to is kept however old it is.
         Prints what it removed and the bytes freed.

Examples:
  imgfab cache ls
  imgfab cache prune --keep-days 7

Flags:
`

func runCache(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("cache", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	dir := fl.String("cache", "", "the cache directory (default $XDG_CACHE_HOME/imgfab, else ~/.cache/imgfab)")
	days := fl.Int("keep-days", 30, "prune: keep what was used within this many days")
	asJSON := fl.Bool("json", false, "ls: one JSON object per entry")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *help {
		fmt.Fprint(stdout, cacheHelp+fl.FlagUsages())
		return errHelp
	}
	if fl.NArg() != 1 || (fl.Arg(0) != "ls" && fl.Arg(0) != "prune") {
		return usagef("want ls or prune")
	}
	if fl.Arg(0) == "ls" && fl.Changed("keep-days") {
		return usagef("--keep-days goes with prune")
	}
	if *days < 0 {
		return usagef("--keep-days %d: want 0 or more", *days)
	}
	st, err := openStore(*dir)
	if err != nil {
		return err
	}
	if fl.Arg(0) == "ls" {
		es, err := st.List()
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			for _, e := range es {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "KIND\tNAME\tSIZE\tLAST USED\tDIGEST\n")
		var total int64
		for _, e := range es {
			if e.Kind == "blob" {
				total += e.Size
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Kind, e.Name, humanSize(e.Size), e.LastUsed.Format(time.DateTime), e.Digest)
		}
		tw.Flush()
		fmt.Fprintf(stdout, "%s: %s in blobs\n", st.Dir, humanSize(total))
		return nil
	}
	rm, err := st.Prune(time.Now().Add(-time.Duration(*days) * 24 * time.Hour))
	if err != nil {
		return err
	}
	sort.SliceStable(rm.Entries, func(i, j int) bool { return rm.Entries[i].Kind < rm.Entries[j].Kind })
	for _, e := range rm.Entries {
		fmt.Fprintf(stdout, "removed %s %s (%s)\n", e.Kind, e.Name, humanSize(e.Size))
	}
	fmt.Fprintf(stdout, "%d removed, %s freed\n", len(rm.Entries), humanSize(rm.Bytes))
	return nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func cachedNote(cached bool) string {
	if cached {
		return " (cached)"
	}
	return ""
}
