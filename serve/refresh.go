package serve

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"
)

// ArchRefresh is what a refresh found for one architecture a class was built for.
type ArchRefresh struct {
	Arch       string   `json:"arch"`
	Old        string   `json:"old_source"`
	New        string   `json:"new_source"`
	Changed    bool     `json:"changed"`
	Rebuilding []string `json:"rebuilding,omitempty"` // artifact keys of the new source being built
}

// Refresh re-resolves the source of class id on every architecture it was built for. Where the
// source moved (a patched base), the pin moves and every file built from the old source is
// built again from the new one, in the background; the old artifacts stay in the store, served
// by digest (/blobs/sha256/…) and listed by GET /classes/{id}.
func (s *Server) Refresh(ctx context.Context, id string) ([]ArchRefresh, error) {
	class, err := s.knownClass(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []ArchRefresh
	var arts []Artifact
	for _, arch := range Arches {
		old, err := s.cfg.Store.Pin(ctx, id, arch)
		if errors.Is(err, ErrNotFound) {
			continue // never built for arch: its first request resolves
		}
		if err != nil {
			return out, errorf(http.StatusBadGateway, "%v", err)
		}
		now, err := s.cfg.Builder.Resolve(ctx, class, arch)
		if err != nil {
			return out, errorf(http.StatusBadGateway, "resolving the class's source for %s: %v", arch, err)
		}
		r := ArchRefresh{Arch: arch, Old: old, New: now, Changed: now != old}
		if r.Changed {
			if err := s.cfg.Store.PutPin(ctx, id, arch, now); err != nil {
				return out, errorf(http.StatusBadGateway, "%v", err)
			}
			s.mu.Lock()
			s.pins[id+"/"+arch] = pinEntry{now, time.Now()}
			s.mu.Unlock()
			if arts == nil {
				if arts, err = s.cfg.Store.Artifacts(ctx, id); err != nil {
					return out, errorf(http.StatusBadGateway, "%v", err)
				}
			}
			var files []string
			for _, a := range arts {
				if a.Arch == arch && a.Source == old && !slices.Contains(files, a.File) {
					files = append(files, a.File)
				}
			}
			slices.Sort(files)
			for _, f := range files {
				t := target{id: id, arch: arch, file: f, source: now, class: class, key: Key(id, arch, now, f, s.cfg.Builder.Version())}
				if _, err := s.cfg.Store.Artifact(ctx, t.key); err == nil {
					continue
				}
				if _, err := s.start(ctx, t); err != nil {
					return out, err
				}
				r.Rebuilding = append(r.Rebuilding, t.key)
			}
			s.log.Info("class refreshed", "class", id, "arch", arch, "old", old, "new", now, "rebuilding", len(r.Rebuilding))
		}
		out = append(out, r)
	}
	if out == nil {
		out = []ArchRefresh{}
	}
	return out, nil
}

func (s *Server) postRefresh(w http.ResponseWriter, r *http.Request) {
	if err := s.authorized(r); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.Refresh(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	for _, a := range res {
		if len(a.Rebuilding) > 0 {
			status = http.StatusAccepted
		}
	}
	writeJSON(w, status, map[string]any{"id": r.PathValue("id"), "architectures": res})
}

// Watch refreshes every stored class each interval until ctx ends.
func (s *Server) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := s.cfg.Store.ClassIDs(ctx)
		if err != nil {
			s.log.Error("watch: listing classes", "err", err.Error())
			continue
		}
		for _, id := range ids {
			if _, err := s.Refresh(ctx, id); err != nil {
				s.log.Error("watch: refresh", "class", id, "err", err.Error())
			}
		}
	}
}
