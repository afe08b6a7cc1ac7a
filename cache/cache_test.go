package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func digest(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLayout(t *testing.T) {
	s := open(t)
	b, err := os.ReadFile(filepath.Join(s.Dir, "oci-layout"))
	if err != nil || string(b) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout: %q %v", b, err)
	}
	var ix index
	b, _ = os.ReadFile(filepath.Join(s.Dir, "index.json"))
	if err := json.Unmarshal(b, &ix); err != nil || ix.SchemaVersion != 2 || ix.Manifests == nil {
		t.Fatalf("index.json %s: %v", b, err)
	}
}

// TestBlobChecked: a blob whose bytes do not match its digest or size is never stored.
func TestBlobChecked(t *testing.T) {
	s := open(t)
	good := []byte("hello")
	h := digest(good)
	if err := s.Put(h, 5, strings.NewReader("HELLO")); err == nil || s.Has(h) {
		t.Fatalf("wrong bytes stored: %v", err)
	}
	if err := s.Put(h, 6, bytes.NewReader(good)); err == nil || s.Has(h) {
		t.Fatalf("wrong size stored: %v", err)
	}
	if err := s.Put(h, 5, bytes.NewReader(good)); err != nil || !s.Has(h) {
		t.Fatalf("good blob: %v", err)
	}
	if b, err := s.ReadBlob(h, 100); err != nil || string(b) != "hello" {
		t.Fatalf("read back %q %v", b, err)
	}
	assertNoTemps(t, s)
}

func assertNoTemps(t *testing.T, s *Store) {
	t.Helper()
	des, _ := os.ReadDir(filepath.Join(s.Dir, "blobs", "sha256"))
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			t.Errorf("temporary file left: %s", de.Name())
		}
	}
}

// TestConcurrent: writers of the same blobs and of different references at once: every blob
// whole, every reference in index.json.
func TestConcurrent(t *testing.T) {
	s := open(t)
	blob := bytes.Repeat([]byte("x"), 3<<20)
	h := digest(blob)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(h, int64(len(blob)), bytes.NewReader(blob)); err != nil {
				t.Error(err)
			}
			m := []byte(fmt.Sprintf(`{"n":%d}`, i))
			d, err := s.PutBytes(m)
			if err != nil {
				t.Error(err)
			}
			if err := s.Tag(fmt.Sprintf("r/%02d", i), v1.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: d, Size: int64(len(m))}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if b, err := s.ReadBlob(h, 4<<20); err != nil || len(b) != len(blob) {
		t.Fatalf("blob: %d bytes, %v", len(b), err)
	}
	ds, err := s.Index()
	if err != nil || len(ds) != 16 {
		t.Fatalf("index.json: %d entries, %v", len(ds), err)
	}
	for i, d := range ds {
		if d.Annotations[RefName] != fmt.Sprintf("r/%02d", i) {
			t.Errorf("entry %d: %v", i, d.Annotations)
		}
	}
	assertNoTemps(t, s)
}

// TestKilledMidWrite: a process killed (SIGKILL) in the middle of a blob leaves no file under the
// blob's name; Prune removes its temporary file once old.
func TestKilledMidWrite(t *testing.T) {
	if os.Getenv("CACHE_TEST_WRITER") != "" {
		s, err := Open(os.Getenv("CACHE_TEST_WRITER"))
		if err != nil {
			os.Exit(3)
		}
		w, err := s.NewBlob(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, 1<<30)
		if err != nil {
			os.Exit(3)
		}
		buf := make([]byte, 64<<10)
		for {
			w.Write(buf)
			os.Stdout.WriteString(".")
			time.Sleep(time.Millisecond)
		}
	}
	s := open(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledMidWrite$")
	cmd.Env = append(os.Environ(), "CACHE_TEST_WRITER="+s.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if _, err := io.ReadFull(out, b); err != nil { // eight writes done: mid-blob
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	if s.Has(h) {
		t.Fatal("a killed write left a blob under its final name")
	}
	des, _ := os.ReadDir(filepath.Join(s.Dir, "blobs", "sha256"))
	if len(des) != 1 || !strings.HasPrefix(des[0].Name(), tmpPrefix) {
		t.Fatalf("blobs/sha256: %v", des)
	}
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(filepath.Join(s.Dir, "blobs", "sha256", des[0].Name()), old, old)
	rm, err := s.Prune(time.Now().Add(-24 * time.Hour))
	if err != nil || len(rm.Entries) != 1 || rm.Entries[0].Kind != "temp" {
		t.Fatalf("prune: %+v %v", rm, err)
	}
}

// TestPrune: old records and unreferenced old blobs go; what a fresh reference refers to stays
// however old; an old reference goes with its blobs.
func TestPrune(t *testing.T) {
	s := open(t)
	put := func(b string) v1.Hash {
		h, err := s.PutBytes([]byte(b))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	age := func(h v1.Hash) {
		old := time.Now().Add(-30 * 24 * time.Hour)
		os.Chtimes(s.BlobPath(h), old, old)
	}
	layerA, cfgA := put("layer a"), put("config a")
	mA := fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q,"size":8},"layers":[{"digest":%q,"size":7}]}`, cfgA, layerA)
	manA := put(mA)
	layerB := put("layer b")
	mB := fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q,"size":8},"layers":[{"digest":%q,"size":7}]}`, cfgA, layerB)
	manB := put(mB)
	stray := put("stray")
	s.Tag("fresh:1", v1.Descriptor{Digest: manA, Size: int64(len(mA)), MediaType: "application/vnd.oci.image.manifest.v1+json"})
	s.Tag("old:1", v1.Descriptor{Digest: manB, Size: int64(len(mB)), MediaType: "application/vnd.oci.image.manifest.v1+json"})
	for _, h := range []v1.Hash{layerA, cfgA, layerB, manB, stray} {
		age(h)
	}
	rm, err := s.Prune(time.Now().Add(-7 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []v1.Hash{layerA, cfgA, manA} {
		if !s.Has(h) {
			t.Errorf("%s (of a fresh reference) removed", h)
		}
	}
	for _, h := range []v1.Hash{layerB, manB, stray} {
		if s.Has(h) {
			t.Errorf("%s kept", h)
		}
	}
	if _, ok, _ := s.Lookup("old:1"); ok {
		t.Error("old reference kept in index.json")
	}
	if _, ok, _ := s.Lookup("fresh:1"); !ok {
		t.Error("fresh reference removed")
	}
	if rm.Bytes != int64(len("layer b")+len(mB)+len("stray")) {
		t.Errorf("freed %d bytes: %+v", rm.Bytes, rm)
	}
}

// TestOutputs: a file stored with its holes, copied out checked; a corrupted blob is refused.
func TestOutputs(t *testing.T) {
	s := open(t)
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, _ := os.Create(p)
	f.WriteAt([]byte("boot"), 0)
	f.WriteAt([]byte("end"), 64<<20)
	f.Close()
	want := fileHex(t, p)
	h, n, err := s.PutFile(p, want)
	if err != nil || h.Hex != want || n != 64<<20+3 {
		t.Fatalf("PutFile: %v %d %v", h, n, err)
	}
	var st syscall.Stat_t
	syscall.Stat(s.BlobPath(h), &st)
	if st.Blocks*512 > 4<<20 {
		t.Errorf("stored output not sparse: %d bytes allocated", st.Blocks*512)
	}
	if err := s.PutRecord(&Record{Key: strings.Repeat("1", 64), Outputs: []RecordOutput{{Path: p, Digest: h.String(), Size: n}}}); err != nil {
		t.Fatal(err)
	}
	r, ok, err := s.GetRecord(strings.Repeat("1", 64))
	if !ok || err != nil || r.Outputs[0].Digest != h.String() {
		t.Fatalf("record %+v %v %v", r, ok, err)
	}
	dst := filepath.Join(t.TempDir(), "out.raw")
	df, _ := os.Create(dst)
	if _, err := s.CopyOut(h, df); err != nil {
		t.Fatal(err)
	}
	df.Close()
	if fileHex(t, dst) != want {
		t.Fatal("copied output differs")
	}
	os.Chmod(s.BlobPath(h), 0o644)
	bf, _ := os.OpenFile(s.BlobPath(h), os.O_WRONLY, 0)
	bf.WriteAt([]byte("X"), 1)
	bf.Close()
	df, _ = os.Create(dst)
	if _, err := s.CopyOut(h, df); err == nil || s.Has(h) {
		t.Fatalf("corrupted blob copied out: %v", err)
	}
	df.Close()
}

func fileHex(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}
