package assemble

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/imgfab/imgfab/customize"
	"github.com/imgfab/imgfab/layers"
)

// customizeReads are the directories whose files customize.Layer reads from the image: the
// account databases, login.defs, skel, hosts and fstab under etc/, and the unit files. Of every
// other entry the pre-pass keeps the metadata only (the zoneinfo names, homes, owners).
var customizeReads = []string{"etc/", "usr/lib/systemd/", "lib/systemd/", "usr/local/lib/systemd/"}

func keepForCustomize(name string) bool {
	for _, p := range customizeReads {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// customize makes the generated top layer (the Plan's customisation and the extra partitions'
// fstab lines): a pre-pass flattens the image and the extra layers
// into a read-only snapshot (layers.Snapshot), customize.Layer computes the layer from it, and
// the layer goes on top of b.ls. Its digest goes into the seed (deriveIDs) and the result.
func (b *build) customize(ctx context.Context) error {
	p := &b.p
	p.progress(Event{Stage: "customize"})
	tree, err := layers.Snapshot(ctx, b.ls, keepForCustomize)
	if err != nil {
		return fmt.Errorf("customize: reading the image: %w", err)
	}
	var cfg customize.Config
	var r customize.Result
	if p.Customize != nil {
		cfg = *p.Customize
		if r, err = customize.Layer(ctx, tree, cfg, time.Unix(b.epoch, 0)); err != nil {
			return fmt.Errorf("customize: %w", err)
		}
	}
	if len(p.Partitions) > 0 {
		// The partitions' identifiers come from the seed with the user's layer in it: the
		// fstab lines that name them cannot be (derivePartitions).
		b.partSeed = buildSeed(b.digest, *p, b.espSize, b.epoch, r.Digest)
		b.derivePartitions()
		if fstab := b.fstabEntries(); len(fstab) > 0 {
			cfg.Fstab = append(slices.Clip(cfg.Fstab), fstab...)
			if r, err = customize.Layer(ctx, tree, cfg, time.Unix(b.epoch, 0)); err != nil {
				return fmt.Errorf("customize: %w", err)
			}
		}
	}
	data := r.Tar
	b.ls = append(b.ls, layers.Layer{Name: "customize", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}})
	b.customDigest = r.Digest
	ops := r.Ops
	if ops == nil {
		ops = []customize.Op{}
	}
	b.res.Customize = &CustomizeResult{Digest: r.Digest, Bytes: int64(len(data)), Ops: ops}
	return nil
}
