package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
)

// containerDiskTagPrefix names the KubeVirt containerDisk made from an artifact: cd-<the qcow2
// artifact's key>.
const containerDiskTagPrefix = "cd-"

// getContainerDisk answers GET /images/{id}/{arch}/containerdisk: the class built as a qcow2 (as
// /images/…/disk.qcow2, built on first request) and pushed to the store as a KubeVirt containerDisk
// image, which KubeVirt pulls straight from the registry:
//
//	{"image": "REGISTRY/REPO:cd-<key>", "digest": "sha256:…", "pull": "REGISTRY/REPO@sha256:…"}
func (s *Server) getContainerDisk(w http.ResponseWriter, r *http.Request) {
	t, err := s.target(r.Context(), r.PathValue("id"), r.PathValue("arch"), "disk.qcow2")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.stored(r.Context(), t.key)
	if errors.Is(err, ErrNotFound) {
		b, serr := s.start(r.Context(), t)
		if serr != nil {
			s.fail(w, r, serr)
			return
		}
		select {
		case <-b.done:
		case <-r.Context().Done():
			return
		}
		a, err = b.art, b.err
	}
	if err != nil {
		s.fail(w, r, fmt.Errorf("build %s: %w", t.key, err))
		return
	}
	ref := s.cfg.Store.repo.Tag(containerDiskTagPrefix + t.key)
	digest, err := s.containerDisk(r.Context(), a, ref.String())
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadGateway, "containerDisk: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"image": ref.String(), "digest": digest,
		"pull": s.cfg.Store.repo.Digest(digest).String(), "artifact": a.Key})
}

// containerDisk makes sure the containerDisk of artifact a is at ref (pushed once per key; the
// same qcow2 gives the same image digest on every replica) and returns its digest.
func (s *Server) containerDisk(ctx context.Context, a Artifact, ref string) (string, error) {
	v, err, _ := s.fetch.Do("cd:"+a.Key, func() (any, error) {
		if d, err := s.cfg.Store.digestOf(ctx, containerDiskTagPrefix+a.Key); err == nil {
			return d, nil
		}
		f, err := s.local(ctx, a.SHA256)
		if err != nil {
			return "", err
		}
		f.Close()
		d, err := s.cfg.Builder.PushContainerDisk(context.WithoutCancel(ctx), filepath.Join(s.cfg.CacheDir, "blobs", a.SHA256), a.Arch, ref)
		if err == nil {
			s.log.Info("containerDisk stored", "key", a.Key, "image", ref, "digest", d)
		}
		return d, err
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}
