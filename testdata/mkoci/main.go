package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// options is the parsed command line.
type options struct {
	out           string
	tag           string
	docker        bool
	epoch         int64 // -1: not given
	comp          compression
	dockerArchive string
	layers        []string
}

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkoci:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), opts, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkoci:", err)
		os.Exit(1)
	}
}

func parseArgs(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("mkoci", flag.ContinueOnError)
	fs.StringVar(&o.out, "o", "", "output directory for the OCI image layout (must not exist or be empty)")
	fs.StringVar(&o.tag, "tag", "", "tag: org.opencontainers.image.ref.name of the manifest in index.json")
	fs.BoolVar(&o.docker, "docker", false, "Docker v2 schema 2 media types instead of OCI ones")
	fs.Int64Var(&o.epoch, "epoch", -1, "config created time and mtime clamp, seconds since 1970 (default: created=0, no clamp)")
	gz := fs.Bool("gzip", false, "gzip layers (the default)")
	zs := fs.Bool("zstd", false, "zstd layers")
	none := fs.Bool("none", false, "uncompressed layers")
	fs.StringVar(&o.dockerArchive, "docker-archive", "", "also write a `docker save`-style tarball to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.layers = fs.Args()
	switch {
	case o.out == "":
		return o, errors.New("-o OUTDIR is required")
	case o.tag == "":
		return o, errors.New("-tag TAG is required")
	case len(o.layers) == 0:
		return o, errors.New("at least one LAYERDIR is required")
	}
	n := 0
	o.comp = compGzip
	for _, c := range []struct {
		set bool
		c   compression
	}{{*gz, compGzip}, {*zs, compZstd}, {*none, compNone}} {
		if c.set {
			n++
			o.comp = c.c
		}
	}
	if n > 1 {
		return o, errors.New("-gzip, -zstd and -none exclude each other")
	}
	return o, nil
}

func run(ctx context.Context, o options, warn io.Writer) error {
	if ents, err := os.ReadDir(o.out); err == nil && len(ents) > 0 {
		return fmt.Errorf("output directory %s is not empty", o.out)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("checking output directory: %w", err)
	}
	tmpDir := filepath.Dir(filepath.Clean(o.out))
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", tmpDir, err)
	}

	created := int64(0)
	if o.epoch >= 0 {
		created = o.epoch
	}
	createdAt := v1.Time{Time: time.Unix(created, 0).UTC()}

	var adds []mutate.Addendum
	for i, dir := range o.layers {
		l, err := packLayer(ctx, dir, tmpDir, o.comp, o.docker, o.epoch, warn)
		if l != nil {
			defer os.Remove(l.path)
		}
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, dir, err)
		}
		adds = append(adds, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: createdAt, CreatedBy: fmt.Sprintf("mkoci layer %d", i+1)},
		})
	}

	img := empty.Image
	if o.docker {
		img = mutate.MediaType(img, types.DockerManifestSchema2)
		img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	} else {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return fmt.Errorf("appending layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = createdAt
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("setting config: %w", err)
	}

	p, err := layout.Write(o.out, empty.Index)
	if err != nil {
		return fmt.Errorf("creating layout %s: %w", o.out, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.tag,
	})); err != nil {
		return fmt.Errorf("writing image to layout %s: %w", o.out, err)
	}
	// go-containerregistry writes layer blobs through 0600 temporary files; make them readable like
	// the rest of the layout.
	blobs, err := filepath.Glob(filepath.Join(o.out, "blobs", "sha256", "*"))
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if err := os.Chmod(b, 0o644); err != nil {
			return fmt.Errorf("chmod %s: %w", b, err)
		}
	}

	if o.dockerArchive != "" {
		ref, err := name.NewTag(o.tag)
		if err != nil {
			return fmt.Errorf("tag %q for docker archive: %w", o.tag, err)
		}
		if err := tarball.WriteToFile(o.dockerArchive, ref, img); err != nil {
			return fmt.Errorf("writing docker archive %s: %w", o.dockerArchive, err)
		}
	}
	return nil
}
