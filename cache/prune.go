package cache

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Entry is one thing the store holds, for `imgfab cache ls`.
type Entry struct {
	Kind     string    `json:"kind"` // "ref" (an index.json entry), "output" (a record), "blob"
	Name     string    `json:"name"` // the reference, the record's key, or the blob's digest
	Digest   string    `json:"digest,omitempty"`
	Size     int64     `json:"size"` // a record: its outputs' sizes; a ref: its manifest's
	LastUsed time.Time `json:"last_used"`
}

// List returns the references, output records and blobs, each kind sorted by name.
func (s *Store) List() ([]Entry, error) {
	var out []Entry
	ds, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		e := Entry{Kind: "ref", Name: d.Annotations[RefName], Digest: d.Digest.String(), Size: d.Size}
		if fi, err := os.Stat(s.BlobPath(d.Digest)); err == nil {
			e.LastUsed = fi.ModTime()
		}
		out = append(out, e)
	}
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		e := Entry{Kind: "output", Name: r.Key, LastUsed: r.mtime}
		if r.Class != "" {
			e.Digest = r.Class + " " + r.Platform
		}
		for _, o := range r.Outputs {
			e.Size += o.Size
		}
		out = append(out, e)
	}
	blobs, err := s.blobs()
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		out = append(out, Entry{Kind: "blob", Name: "sha256:" + b.Name(), Size: b.size, LastUsed: b.mtime})
	}
	return out, nil
}

type recordFile struct {
	Record
	path  string
	mtime time.Time
}

func (s *Store) records() ([]recordFile, error) {
	des, err := os.ReadDir(filepath.Join(s.Dir, outputsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []recordFile
	for _, de := range des {
		n := de.Name()
		if !strings.HasSuffix(n, ".json") || strings.HasPrefix(n, tmpPrefix) {
			continue
		}
		p := filepath.Join(s.Dir, outputsDir, n)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		rf := recordFile{path: p, mtime: fi.ModTime()}
		if b, err := os.ReadFile(p); err == nil {
			json.Unmarshal(b, &rf.Record)
		}
		if rf.Key == "" {
			rf.Key = strings.TrimSuffix(n, ".json")
		}
		out = append(out, rf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

type blobFile struct {
	fs.DirEntry
	size  int64
	mtime time.Time
}

func (s *Store) blobs() ([]blobFile, error) {
	des, err := os.ReadDir(filepath.Join(s.Dir, "blobs", "sha256"))
	if err != nil {
		return nil, err
	}
	var out []blobFile
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			continue
		}
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, blobFile{de, fi.Size(), fi.ModTime()})
	}
	return out, nil
}

// Removed is what Prune removed.
type Removed struct {
	Entries []Entry
	Bytes   int64
}

// Prune removes what was not used since cutoff: output records, references (index.json
// entries) whose manifest blob is that old, and blobs that nothing kept refers to. A blob that a
// kept reference (its index, manifests, configs, layers) or a kept record refers to stays however
// old it is. Temporary files of interrupted writes older than an hour (or cutoff) go too.
func (s *Store) Prune(cutoff time.Time) (Removed, error) {
	var rm Removed
	err := s.locked(func() error {
		keep := map[string]bool{}
		// Output records.
		recs, err := s.records()
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.mtime.Before(cutoff) {
				if err := os.Remove(r.path); err == nil {
					rm.Entries = append(rm.Entries, Entry{Kind: "output", Name: r.Key, LastUsed: r.mtime})
				}
				continue
			}
			for _, o := range r.Outputs {
				keep[o.Digest] = true
			}
		}
		// References.
		ds, err := s.readIndex()
		if err != nil {
			return err
		}
		var kept []v1.Descriptor
		for _, d := range ds {
			fi, err := os.Stat(s.BlobPath(d.Digest))
			if err != nil || fi.ModTime().Before(cutoff) {
				e := Entry{Kind: "ref", Name: d.Annotations[RefName], Digest: d.Digest.String()}
				if err == nil {
					e.LastUsed = fi.ModTime()
				}
				rm.Entries = append(rm.Entries, e)
				continue
			}
			kept = append(kept, d)
			s.mark(d.Digest, keep, 0)
		}
		if len(kept) != len(ds) {
			if err := s.writeIndex(kept); err != nil {
				return err
			}
		}
		// Blobs.
		blobs, err := s.blobs()
		if err != nil {
			return err
		}
		for _, b := range blobs {
			d := "sha256:" + b.Name()
			if keep[d] || !b.mtime.Before(cutoff) {
				continue
			}
			if err := os.Remove(filepath.Join(s.Dir, "blobs", "sha256", b.Name())); err == nil {
				rm.Entries = append(rm.Entries, Entry{Kind: "blob", Name: d, Size: b.size, LastUsed: b.mtime})
				rm.Bytes += b.size
			}
		}
		// Temporary files.
		tmpCut := cutoff
		if h := time.Now().Add(-time.Hour); h.Before(tmpCut) {
			tmpCut = h
		}
		for _, dir := range []string{filepath.Join(s.Dir, "blobs", "sha256"), filepath.Join(s.Dir, outputsDir), s.Dir} {
			des, _ := os.ReadDir(dir)
			for _, de := range des {
				if !strings.HasPrefix(de.Name(), tmpPrefix) {
					continue
				}
				if fi, err := de.Info(); err == nil && fi.ModTime().Before(tmpCut) {
					if os.Remove(filepath.Join(dir, de.Name())) == nil {
						rm.Entries = append(rm.Entries, Entry{Kind: "temp", Name: de.Name(), Size: fi.Size(), LastUsed: fi.ModTime()})
						rm.Bytes += fi.Size()
					}
				}
			}
		}
		return nil
	})
	return rm, err
}

// mark adds h and everything the manifest or index h refers to (as far as the store holds it)
// to keep.
func (s *Store) mark(h v1.Hash, keep map[string]bool, depth int) {
	if keep[h.String()] || depth > 8 {
		return
	}
	keep[h.String()] = true
	fi, err := os.Stat(s.BlobPath(h))
	if err != nil || fi.Size() > 4<<20 {
		return
	}
	b, err := os.ReadFile(s.BlobPath(h))
	if err != nil {
		return
	}
	var m struct {
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(b, &m) != nil {
		return
	}
	if m.Config != nil {
		keep[m.Config.Digest.String()] = true
	}
	for _, l := range m.Layers {
		keep[l.Digest.String()] = true
	}
	for _, d := range m.Manifests {
		s.mark(d.Digest, keep, depth+1)
	}
}
