package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Record is a finished-output record: the outputs one build made, kept as blobs, and the
// build's result (as the caller encoded it), under the key of everything that made them.
type Record struct {
	Key      string          `json:"key"` // 64 hex digits
	Class    string          `json:"class,omitempty"`
	Platform string          `json:"platform,omitempty"`
	Outputs  []RecordOutput  `json:"outputs"`
	Result   json.RawMessage `json:"result,omitempty"`
}

// RecordOutput is one output of a record: its blob.
type RecordOutput struct {
	Path   string `json:"path"` // as built (for people; not used)
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

func checkKey(key string) error {
	if len(key) != 64 || !isHex(key) {
		return fmt.Errorf("cache: key %q: want 64 lowercase hex digits", key)
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Store) recordPath(key string) string { return filepath.Join(s.Dir, outputsDir, key+".json") }

// GetRecord returns the record of key, marking it used; ok is false when there is none.
func (s *Store) GetRecord(key string) (*Record, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	b, err := os.ReadFile(s.recordPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil || r.Key != key {
		return nil, false, nil // a record that does not read back is no record: built again
	}
	Touch(s.recordPath(key))
	return &r, true, nil
}

// PutRecord writes r (its outputs already stored with PutFile).
func (s *Store) PutRecord(r *Record) error {
	if err := checkKey(r.Key); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.recordPath(r.Key), append(b, '\n'))
}

const chunk = 1 << 20

// sparseCopy copies src to dst (both at offset 0), hashing every byte and leaving holes where a
// whole chunk is zeros; it returns the sha256 and the size.
func sparseCopy(dst, src *os.File) (string, int64, error) {
	h := sha256.New()
	buf := make([]byte, chunk)
	zero := make([]byte, chunk)
	var n int64
	for {
		k, err := io.ReadFull(src, buf)
		if k > 0 {
			h.Write(buf[:k])
			if bytes.Equal(buf[:k], zero[:k]) {
				if _, err := dst.Seek(int64(k), io.SeekCurrent); err != nil {
					return "", 0, err
				}
			} else if _, err := dst.Write(buf[:k]); err != nil {
				return "", 0, err
			}
			n += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return "", 0, err
		}
	}
	if err := dst.Truncate(n); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// PutFile stores the file at path as a blob (holes kept) and returns its digest and size. want,
// when not empty, is the sha256 (hex) the caller computed while writing it: the blob is then a
// hard link to the file where the store is on the same filesystem (no second copy of a disk;
// were the file changed in place later, CopyOut's check finds it and the output is built
// again), else a copy, refused if its bytes no longer match.
func (s *Store) PutFile(path, want string) (v1.Hash, int64, error) {
	if want != "" {
		if h, n, ok := s.linkFile(path, want); ok {
			return h, n, nil
		}
	}
	return s.copyFile(path, want)
}

// linkFile stores path as blob want by a hard link; false when it cannot (another filesystem, a
// store that already has the blob is handled by copyFile).
func (s *Store) linkFile(path, want string) (v1.Hash, int64, bool) {
	h := v1.Hash{Algorithm: "sha256", Hex: want}
	if s.Has(h) {
		return v1.Hash{}, 0, false
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return v1.Hash{}, 0, false
	}
	tmp, err := createTemp(filepath.Join(s.Dir, "blobs", "sha256"), "output")
	if err != nil {
		return v1.Hash{}, 0, false
	}
	name := tmp.Name()
	tmp.Close()
	os.Remove(name)
	if err := os.Link(path, name); err != nil {
		return v1.Hash{}, 0, false
	}
	if err := os.Rename(name, s.BlobPath(h)); err != nil {
		os.Remove(name)
		return v1.Hash{}, 0, false
	}
	syncDir(filepath.Dir(s.BlobPath(h)))
	return h, fi.Size(), true
}

// copyFile stores a copy of path, hashed as it is read.
func (s *Store) copyFile(path, want string) (v1.Hash, int64, error) {
	src, err := os.Open(path)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer src.Close()
	if want != "" {
		h := v1.Hash{Algorithm: "sha256", Hex: want}
		if s.Has(h) {
			Touch(s.BlobPath(h))
			fi, err := os.Stat(s.BlobPath(h))
			if err != nil {
				return v1.Hash{}, 0, err
			}
			return h, fi.Size(), nil
		}
	}
	tmp, err := createTemp(filepath.Join(s.Dir, "blobs", "sha256"), "output")
	if err != nil {
		return v1.Hash{}, 0, err
	}
	name := tmp.Name()
	fail := func(err error) (v1.Hash, int64, error) {
		tmp.Close()
		os.Remove(name)
		return v1.Hash{}, 0, err
	}
	sum, n, err := sparseCopy(tmp, src)
	if err != nil {
		return fail(err)
	}
	if want != "" && sum != want {
		return fail(fmt.Errorf("cache: %s changed while it was stored (sha256 %s, built %s)", path, sum, want))
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return v1.Hash{}, 0, err
	}
	h := v1.Hash{Algorithm: "sha256", Hex: sum}
	if err := os.Rename(name, s.BlobPath(h)); err != nil {
		os.Remove(name)
		return v1.Hash{}, 0, err
	}
	syncDir(filepath.Dir(s.BlobPath(h)))
	return h, n, nil
}

// CopyOut copies blob h into dst (a new, empty file), holes kept, checking its sha256 as it
// copies; a blob whose bytes do not match is an error (and removed from the store).
func (s *Store) CopyOut(h v1.Hash, dst *os.File) (int64, error) {
	src, err := s.Open(h)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	sum, n, err := sparseCopy(dst, src)
	if err != nil {
		return 0, err
	}
	if sum != h.Hex {
		os.Remove(s.BlobPath(h))
		return 0, fmt.Errorf("cache: blob %s has sha256:%s: removed", h, sum)
	}
	return n, nil
}
