package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// RefName is the annotation that names a reference in index.json.
const RefName = "org.opencontainers.image.ref.name"

const (
	layoutFile = "oci-layout"
	indexFile  = "index.json"
	lockFile   = ".lock"
	outputsDir = "imgfab-outputs"
	tmpPrefix  = ".tmp-"
)

// Store is a content store directory.
type Store struct {
	Dir string
}

// DefaultDir is $XDG_CACHE_HOME/imgfab, else ~/.cache/imgfab.
func DefaultDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "imgfab"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w (set XDG_CACHE_HOME or give --cache DIR)", err)
	}
	return filepath.Join(home, ".cache", "imgfab"), nil
}

// Open opens the store at dir, making it (an empty OCI layout) when it does not exist.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	s := &Store{Dir: abs}
	if err := os.MkdirAll(filepath.Join(abs, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", abs, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, outputsDir), 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", abs, err)
	}
	if _, err := os.Stat(filepath.Join(abs, layoutFile)); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(filepath.Join(abs, layoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return nil, fmt.Errorf("cache %s: %w", abs, err)
		}
	}
	if _, err := os.Stat(filepath.Join(abs, indexFile)); errors.Is(err, fs.ErrNotExist) {
		err := s.locked(func() error {
			if _, err := os.Stat(filepath.Join(abs, indexFile)); err == nil {
				return nil
			}
			return s.writeIndex(nil)
		})
		if err != nil {
			return nil, fmt.Errorf("cache %s: %w", abs, err)
		}
	}
	return s, nil
}

// BlobPath is where blob h is (or would be) kept.
func (s *Store) BlobPath(h v1.Hash) string {
	return filepath.Join(s.Dir, "blobs", h.Algorithm, h.Hex)
}

func checkHash(h v1.Hash) error {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 || strings.Trim(h.Hex, "0123456789abcdef") != "" {
		return fmt.Errorf("cache: digest %q: want sha256 and 64 lowercase hex digits", h.String())
	}
	return nil
}

// Has reports whether blob h is in the store.
func (s *Store) Has(h v1.Hash) bool {
	if checkHash(h) != nil {
		return false
	}
	fi, err := os.Lstat(s.BlobPath(h))
	return err == nil && fi.Mode().IsRegular()
}

// Open opens blob h and marks it used; an absent blob is an error wrapping fs.ErrNotExist. The
// bytes are as they were checked when written; readers check them again as they read.
func (s *Store) Open(h v1.Hash) (*os.File, error) {
	if err := checkHash(h); err != nil {
		return nil, err
	}
	p := s.BlobPath(h)
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("cache: blob %s is not a regular file", h)
	}
	Touch(p)
	return f, nil
}

// ReadBlob reads a whole blob of at most limit bytes, checked against h.
func (s *Store) ReadBlob(h v1.Hash, limit int64) ([]byte, error) {
	f, err := s.Open(h)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("cache: blob %s: more than %d bytes", h, limit)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != h.Hex {
		return nil, fmt.Errorf("cache: blob %s: stored bytes have sha256:%s (remove it; it is fetched again)", h, hex.EncodeToString(sum[:]))
	}
	return b, nil
}

// Touch sets path's modification time to now: its last use.
func Touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

var tmpSeq atomic.Int64

// createTemp creates an O_EXCL temporary file in dir named .tmp-NAME-PID-N.
func createTemp(dir, name string) (*os.File, error) {
	for {
		p := filepath.Join(dir, fmt.Sprintf("%s%s-%d-%d", tmpPrefix, name, os.Getpid(), tmpSeq.Add(1)))
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
}

// BlobWriter writes one blob: bytes go to a temporary file and are hashed; Commit checks the
// digest and size and renames the file to the blob's name.
type BlobWriter struct {
	s    *Store
	want v1.Hash
	size int64 // -1: unknown
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// NewBlob starts writing blob want of size bytes (-1: not known).
func (s *Store) NewBlob(want v1.Hash, size int64) (*BlobWriter, error) {
	if err := checkHash(want); err != nil {
		return nil, err
	}
	f, err := createTemp(filepath.Dir(s.BlobPath(want)), want.Hex)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &BlobWriter{s: s, want: want, size: size, f: f, h: sha256.New()}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("cache: write after commit or abort")
	}
	w.h.Write(p)
	w.n += int64(len(p))
	return w.f.Write(p)
}

// Abort removes the temporary file; after Commit it does nothing.
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	name := w.f.Name()
	w.f.Close()
	os.Remove(name)
}

// Commit checks the bytes written against the digest and size, syncs them and renames them to
// the blob's final name. On error nothing is left.
func (w *BlobWriter) Commit() error {
	if w.done {
		return errors.New("cache: commit after commit or abort")
	}
	if w.size >= 0 && w.n != w.size {
		w.Abort()
		return fmt.Errorf("cache: blob %s: %d bytes written, want %d", w.want, w.n, w.size)
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); got != w.want.Hex {
		w.Abort()
		return fmt.Errorf("cache: blob %s: bytes written have sha256:%s", w.want, got)
	}
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("cache: %w", err)
	}
	name := w.f.Name()
	w.done = true
	if err := w.f.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("cache: %w", err)
	}
	final := w.s.BlobPath(w.want)
	if err := os.Rename(name, final); err != nil {
		os.Remove(name)
		return fmt.Errorf("cache: %w", err)
	}
	syncDir(filepath.Dir(final))
	return nil
}

// Put writes blob want from r (size -1: not known), unless the store has it.
func (s *Store) Put(want v1.Hash, size int64, r io.Reader) error {
	if s.Has(want) {
		Touch(s.BlobPath(want))
		return nil
	}
	w, err := s.NewBlob(want, size)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return fmt.Errorf("cache: blob %s: %w", want, err)
	}
	return w.Commit()
}

// PutBytes writes blob b (named by its sha256) unless the store has it, and returns its digest.
func (s *Store) PutBytes(b []byte) (v1.Hash, error) {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	return h, s.Put(h, int64(len(b)), strings.NewReader(string(b)))
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// writeFileAtomic writes b to a temporary file beside path, syncs it and renames it to path.
func writeFileAtomic(path string, b []byte) error {
	f, err := createTemp(filepath.Dir(path), filepath.Base(path))
	if err != nil {
		return err
	}
	name := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

// locked runs fn under an exclusive flock of DIR/.lock.
func (s *Store) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(s.Dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}

// index is index.json.
type index struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType,omitempty"`
	Manifests     []v1.Descriptor `json:"manifests"`
}

func (s *Store) readIndex() ([]v1.Descriptor, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, indexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("cache %s: index.json: %w", s.Dir, err)
	}
	return ix.Manifests, nil
}

func (s *Store) writeIndex(ds []v1.Descriptor) error {
	if ds == nil {
		ds = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(index{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: ds}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.Dir, indexFile), append(b, '\n'))
}

// Index returns index.json's entries.
func (s *Store) Index() ([]v1.Descriptor, error) { return s.readIndex() }

// Tag records d in index.json under ref (the org.opencontainers.image.ref.name annotation),
// replacing what ref named before. Entries are kept sorted by reference.
func (s *Store) Tag(ref string, d v1.Descriptor) error {
	d.Annotations = map[string]string{RefName: ref}
	d.Platform = nil
	return s.locked(func() error {
		ds, err := s.readIndex()
		if err != nil {
			return err
		}
		out := ds[:0:0]
		for _, e := range ds {
			if e.Annotations[RefName] == ref {
				if e.Digest == d.Digest && e.MediaType == d.MediaType && e.Size == d.Size {
					return nil // unchanged: no write
				}
				continue
			}
			out = append(out, e)
		}
		out = append(out, d)
		sortDescs(out)
		return s.writeIndex(out)
	})
}

func sortDescs(ds []v1.Descriptor) {
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && ds[j].Annotations[RefName] < ds[j-1].Annotations[RefName]; j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}

// Lookup returns the descriptor index.json records for ref.
func (s *Store) Lookup(ref string) (v1.Descriptor, bool, error) {
	ds, err := s.readIndex()
	if err != nil {
		return v1.Descriptor{}, false, err
	}
	for _, d := range ds {
		if d.Annotations[RefName] == ref {
			return d, true, nil
		}
	}
	return v1.Descriptor{}, false, nil
}

// MissingError is a blob the store does not have (offline, nothing fetched).
type MissingError struct {
	Dir    string
	Digest string
	What   string // "manifest", "blob", "reference"
}

func (e *MissingError) Error() string {
	if e.What == "reference" {
		return fmt.Sprintf("offline: %s is not in the cache %s (run imgfab lock, or build once online)", e.Digest, e.Dir)
	}
	return fmt.Sprintf("offline: %s %s is not in the cache %s", e.What, e.Digest, e.Dir)
}

func (e *MissingError) Is(target error) bool { return target == fs.ErrNotExist }
