package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/cache"
	"github.com/imgfab/imgfab/layers"
	"github.com/imgfab/imgfab/spec"
)

const lockHelp = `Usage: imgfab lock -f FILE [--insecure] [--cache DIR] [CLASS...]

Resolve the source of every class of a class file (or of the classes named), for each of its
platforms, and write FILE's lock file, imgfab.lock beside it: per class and platform the source
as written, the digest of the index the reference names (if it names one), the image manifest,
the config and every layer. Every blob of a registry source is fetched into the local cache
(an OCI image layout, default $XDG_CACHE_HOME/imgfab, else ~/.cache/imgfab), so that
'imgfab build -f FILE --locked --offline' then builds without the network. With CLASS
arguments the other classes' entries are kept as they are in the lock file.

The lock file is JSON with sorted keys (docs/CLASSFILE.md):
  {"imgfab_lock": 1, "classes": {"web": {"linux/amd64": {"source": "docker://…",
    "index": "sha256:…", "manifest": "sha256:…", "config": "sha256:…", "layers": ["sha256:…"]}}}}

Examples:
  imgfab lock -f imgfab.yaml
  imgfab lock -f imgfab.yaml web
  imgfab build -f imgfab.yaml --locked            # fails if a tag moved
  imgfab build -f imgfab.yaml --locked --offline  # from the cache only

Flags:
`

// lockVersion is the lock file's format version.
const lockVersion = 1

// lockFile is imgfab.lock.
type lockFile struct {
	Version int                             `json:"imgfab_lock"`
	Classes map[string]map[string]lockEntry `json:"classes"` // class → platform → entry
}

// lockEntry is what one class's source resolved to for one platform.
type lockEntry struct {
	Source   string   `json:"source"`
	Index    string   `json:"index,omitempty"`
	Manifest string   `json:"manifest"`
	Config   string   `json:"config"`
	Layers   []string `json:"layers"`
}

// lockPath is the lock file of the class file at path.
func lockPath(path string) string { return filepath.Join(filepath.Dir(path), "imgfab.lock") }

func readLock(path string) (*lockFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l lockFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if l.Version != lockVersion {
		return nil, fmt.Errorf("%s: imgfab_lock %d: this imgfab reads version %d", path, l.Version, lockVersion)
	}
	for c, ps := range l.Classes {
		for p, e := range ps {
			for _, d := range append([]string{e.Manifest, e.Config}, e.Layers...) {
				if _, err := v1.NewHash(d); err != nil {
					return nil, fmt.Errorf("%s: classes.%s.%s: digest %q: %v", path, c, p, d, err)
				}
			}
			if e.Index != "" {
				if _, err := v1.NewHash(e.Index); err != nil {
					return nil, fmt.Errorf("%s: classes.%s.%s: index %q: %v", path, c, p, e.Index, err)
				}
			}
		}
	}
	return &l, nil
}

func (l *lockFile) entry(class, platform string) (lockEntry, bool) {
	e, ok := l.Classes[class][platform]
	return e, ok
}

// writeLock writes the lock file atomically (a temporary file beside it, renamed).
func writeLock(path string, l *lockFile) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".imgfab.lock-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func runLock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("lock", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	file := fl.StringP("file", "f", "", "the class file (imgfab.yaml); imgfab.lock is written beside it")
	insecure := fl.Bool("insecure", false, "allow a plain-HTTP registry")
	cacheDir := fl.String("cache", "", "the local cache (default $XDG_CACHE_HOME/imgfab, else ~/.cache/imgfab)")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *help {
		fmt.Fprint(stdout, lockHelp+fl.FlagUsages())
		return errHelp
	}
	if *file == "" {
		return usagef("want -f FILE")
	}
	f, err := spec.Load(*file)
	if err != nil {
		var se *spec.Error
		if errors.As(err, &se) {
			return usagef("%v", err)
		}
		return usagef("-f: %v", err)
	}
	classes, err := pickClasses(f, *file, fl.Args())
	if err != nil {
		return err
	}
	st, err := openStore(*cacheDir)
	if err != nil {
		return err
	}
	lp := lockPath(*file)
	l := &lockFile{Version: lockVersion, Classes: map[string]map[string]lockEntry{}}
	if len(fl.Args()) > 0 { // the other classes keep their entries
		old, err := readLock(lp)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if old != nil {
			for c, ps := range old.Classes {
				if f.Class(c) != nil {
					l.Classes[c] = ps
				}
			}
		}
	}
	for _, c := range classes {
		ps := map[string]lockEntry{}
		for _, pl := range c.Platforms {
			opts := resolveOpts(pl, *insecure, st, false)
			img, err := layers.Resolve(ctx, c.FromAbs, opts...)
			if err != nil {
				return fmt.Errorf("class %s (%s): %w", c.Name, pl, err)
			}
			if err := layers.Fetch(ctx, img); err != nil {
				return fmt.Errorf("class %s (%s): %w", c.Name, pl, err)
			}
			pins, err := layers.PinsOf(img)
			if err != nil {
				return fmt.Errorf("class %s (%s): %w", c.Name, pl, err)
			}
			ps[pl.String()] = lockEntry{Source: c.From, Index: pins.Index, Manifest: pins.Manifest, Config: pins.Config, Layers: pins.Layers}
			fmt.Fprintf(stdout, "%s %s: %s %s\n", c.Name, pl, c.From, pins.Manifest)
		}
		l.Classes[c.Name] = ps
	}
	if err := writeLock(lp, l); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", lp)
	return nil
}

// openStore opens the cache: dir, else the default.
func openStore(dir string) (*cache.Store, error) {
	if dir == "" {
		d, err := cache.DefaultDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	return cache.Open(dir)
}

// resolveOpts are the layers options of a class's source for one platform.
func resolveOpts(pl spec.Platform, insecure bool, st *cache.Store, offline bool) []layers.Option {
	opts := []layers.Option{layers.WithPlatform(v1.Platform{OS: pl.OS, Architecture: pl.Arch, Variant: pl.Variant})}
	if insecure {
		opts = append(opts, layers.WithInsecure())
	}
	if st != nil {
		opts = append(opts, layers.WithStore(st))
	}
	if offline {
		opts = append(opts, layers.WithOffline())
	}
	return opts
}
