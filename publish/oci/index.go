package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgfab/imgfab/publish"
)

// PushIndex pushes several disks of one image, one per architecture (Artifact.Arch), as one
// multi-platform KubeVirt containerDisk at Ref: each disk becomes the containerDisk Push makes
// of it (the same manifest, its config of the disk's architecture), and Ref gets an OCI image
// index with one manifest per platform, linux/amd64 then linux/arm64 whatever the order of as. A
// runtime (KubeVirt's node, skopeo --override-arch) picks the manifest of its own platform.
//
// The index is reproducible like a manifest: the same disks give the same digest, so a rerun
// finds the tag already at that digest and uploads nothing, and blobs already in the repository
// are not sent again. Result.ID is the index's digest; Result.Details has "platforms" and, for
// each platform P, "manifest.P", "layer_digest.P", "layer_size.P" (and "converted_from.P").
// Two disks of one architecture, and an index of OCI artifacts (Target.Artifact), are errors.
func (o *Target) PushIndex(ctx context.Context, as []publish.Artifact, p publish.Progress) (res publish.Result, err error) {
	res = publish.Result{Target: targetName}
	if o.Artifact {
		return res, fmt.Errorf("oci: an index holds containerDisks, not OCI artifacts: push an artifact per disk")
	}
	if len(as) == 0 {
		return res, fmt.Errorf("oci: an index needs at least one disk")
	}
	// One disk per platform, in platform order (so the index does not depend on the order given).
	type disk struct {
		a        publish.Artifact
		platform v1.Platform
	}
	disks := make([]disk, len(as))
	for i, a := range as {
		if a.Image == nil {
			return res, fmt.Errorf("oci: disk %d of the index: no disk image", i+1)
		}
		arch, err := a.Architecture()
		if err != nil {
			return res, fmt.Errorf("oci: disk %d of the index (%s): %w", i+1, a.Path, err)
		}
		disks[i] = disk{a, v1.Platform{OS: "linux", Architecture: arch}}
	}
	slices.SortStableFunc(disks, func(x, y disk) int { return strings.Compare(x.platform.Architecture, y.platform.Architecture) })
	for i := 1; i < len(disks); i++ {
		if disks[i].platform.Architecture == disks[i-1].platform.Architecture {
			return res, fmt.Errorf("oci: two disks for platform %s in one index (%s and %s)", disks[i].platform, disks[i-1].a.Path, disks[i].a.Path)
		}
	}

	ref, kc, secrets, err := o.reference()
	if err != nil {
		return res, err
	}
	res.Name = ref.Name()
	created := o.created()

	// Each disk's containerDisk, as Push makes it; the layers count the bytes the upload reads.
	var closed atomic.Bool
	defer closed.Store(true)
	up := publish.Progress(func(e publish.Event) {
		if !closed.Load() {
			p.Emit(e)
		}
	})
	var sent atomic.Int64
	var total int64
	idx := &pushIndex{images: map[v1.Hash]v1.Image{}}
	im := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	res.Details = map[string]string{"kind": "index", "format": "qcow2"}
	var platforms []string
	for _, d := range disks {
		plat := d.platform.String()
		b, err := o.blob(ctx, d.a, created, p)
		if err != nil {
			return res, err
		}
		defer b.cleanup()
		ls, _ := b.layer.Size()
		ld, _ := b.layer.Digest()
		cl := &countingLayer{Layer: b.layer, p: up, sent: &sent, total: ls, note: plat}
		img, err := o.image(d.a, cl, b.format, created)
		if err != nil {
			return res, publish.NewStepError(targetName, "manifest of "+plat, err)
		}
		desc, err := partial.Descriptor(img)
		if err != nil {
			return res, publish.NewStepError(targetName, "manifest of "+plat, err)
		}
		desc.Platform = &d.platform
		im.Manifests = append(im.Manifests, *desc)
		idx.images[desc.Digest] = img
		total += ls
		platforms = append(platforms, plat)
		res.Details["manifest."+plat] = desc.Digest.String()
		res.Details["layer_digest."+plat] = ld.String()
		res.Details["layer_size."+plat] = strconv.FormatInt(ls, 10)
		if c := b.details["converted_from"]; c != "" {
			res.Details["converted_from."+plat] = c
		}
	}
	if idx.manifest, err = json.Marshal(im); err != nil {
		return res, publish.NewStepError(targetName, "index", err)
	}
	dig, err := idx.Digest()
	if err != nil {
		return res, publish.NewStepError(targetName, "index", err)
	}
	res.ID = dig.String()
	res.Details["platforms"] = strings.Join(platforms, ",")
	res.Details["pull"] = ref.Context().Digest(dig.String()).String()

	opts := o.remoteOptions(ctx, kc)
	// Idempotence: the tag already at this digest means the index and every image are there.
	if _, isTag := ref.(name.Tag); isTag {
		desc, err := remote.Head(ref, opts...)
		switch {
		case err == nil && desc.Digest == dig:
			res.Existing = true
			up.Emit(publish.Event{Target: targetName, Step: "upload", Done: total, Total: total, Note: "already in the registry"})
			return res, nil
		case err != nil && !isNotFound(err):
			return res, publish.NewStepError(targetName, "checking "+ref.Name(), err, secrets...)
		}
	}
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		if ctx.Err() != nil {
			return res, publish.NewStepError(targetName, "upload to "+ref.Name(), ctx.Err())
		}
		return res, publish.NewStepError(targetName, "upload to "+ref.Name(), err, secrets...)
	}
	if sent.Load() == 0 {
		res.Details["blobs_existing"] = "true"
		up.Emit(publish.Event{Target: targetName, Step: "upload", Done: total, Total: total, Note: "blobs already in the registry"})
	} else {
		up.Emit(publish.Event{Target: targetName, Step: "upload", Done: total, Total: total})
	}
	return res, nil
}

// pushIndex is the image index PushIndex writes: its manifest as marshalled, and its images.
type pushIndex struct {
	manifest []byte
	images   map[v1.Hash]v1.Image
}

func (i *pushIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }
func (i *pushIndex) Digest() (v1.Hash, error)            { return partial.Digest(i) }
func (i *pushIndex) Size() (int64, error)                { return partial.Size(i) }
func (i *pushIndex) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *pushIndex) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(i.manifest))
}

func (i *pushIndex) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := i.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("no image %s in this index", h)
}

func (i *pushIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("no index %s in this index", h)
}

var _ v1.ImageIndex = (*pushIndex)(nil)
