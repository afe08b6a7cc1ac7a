package verity

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"
)

// memAt is an in-memory io.WriterAt.
type memAt struct{ b []byte }

func (m *memAt) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

var rootRE = regexp.MustCompile(`Root hash:\s+([0-9a-f]{64})`)

// TestAgainstVeritysetup: for data sizes around every level boundary (1 block; 127, 128 and 129,
// where level 0 takes a second block; 16,385, where a third level appears), with and without a
// salt, in 4 KiB and 512-byte blocks, and on one core and all, the hash area is byte for byte
// the one `veritysetup format` writes with the same salt and UUID, the root hashes agree, and
// `veritysetup verify` accepts ours; a flipped data byte fails verification.
func TestAgainstVeritysetup(t *testing.T) {
	vs := testtool.Need(t, "veritysetup", "cryptsetup-bin")
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	const uuidStr = "12345678-9abc-def0-0123-456789abcdef"
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name   string
		blocks int64
		bs     int
		salt   []byte
		procs  int
	}{
		{"1-block", 1, 4096, []byte{1, 2, 3}, 0},
		{"127", 127, 4096, bytes.Repeat([]byte{0xab}, 32), 0},
		{"128", 128, 4096, bytes.Repeat([]byte{0xab}, 32), 0},
		{"129", 129, 4096, nil, 0},
		{"16385", 16385, 4096, bytes.Repeat([]byte{7}, 256), 0},
		{"16385-one-core", 16385, 4096, bytes.Repeat([]byte{7}, 256), 1},
		{"512-byte-blocks", 3000, 512, []byte("imgfab"), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.procs != 0 {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(c.procs))
			}
			dir := t.TempDir()
			data := make([]byte, c.blocks*int64(c.bs))
			for i := range data {
				if i%3 != 0 { // some zero bytes, not all
					data[i] = byte(r.IntN(256))
				}
			}
			dataPath := filepath.Join(dir, "data")
			if err := os.WriteFile(dataPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			p := Params{Salt: c.salt, UUID: uuid, DataBlockSize: c.bs, HashBlockSize: c.bs}
			var ours memAt
			tree, err := Write(t.Context(), bytes.NewReader(data), int64(len(data)), &ours, p)
			if err != nil {
				t.Fatal(err)
			}
			if size, _ := HashSize(int64(len(data)), p); size != tree.HashSize || int64(len(ours.b)) != size {
				t.Fatalf("hash area: HashSize %d, Write says %d, wrote %d bytes", size, tree.HashSize, len(ours.b))
			}
			saltHex := hex.EncodeToString(c.salt)
			if len(c.salt) == 0 {
				saltHex = "-"
			}
			theirsPath := filepath.Join(dir, "hash")
			out, err := exec.Command(vs, "format", dataPath, theirsPath, "--salt="+saltHex, "--uuid="+uuidStr,
				"--data-block-size", itoa(c.bs), "--hash-block-size", itoa(c.bs)).CombinedOutput()
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, out)
			}
			m := rootRE.FindSubmatch(out)
			if m == nil {
				t.Fatalf("no root hash in\n%s", out)
			}
			if got := hex.EncodeToString(tree.RootHash[:]); got != string(m[1]) {
				t.Errorf("root hash %s, veritysetup %s", got, m[1])
			}
			theirs, err := os.ReadFile(theirsPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.b, theirs) {
				t.Errorf("hash area differs from veritysetup's (%d vs %d bytes, first difference at %d)", len(ours.b), len(theirs), firstDiff(ours.b, theirs))
			}
			oursPath := filepath.Join(dir, "ours")
			if err := os.WriteFile(oursPath, ours.b, 0o644); err != nil {
				t.Fatal(err)
			}
			root := hex.EncodeToString(tree.RootHash[:])
			if out, err := exec.Command(vs, "verify", dataPath, oursPath, root).CombinedOutput(); err != nil {
				t.Errorf("veritysetup verify: %v\n%s", err, out)
			}
			data[len(data)/2] ^= 1
			if err := os.WriteFile(dataPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(vs, "verify", dataPath, oursPath, root).CombinedOutput(); err == nil {
				t.Errorf("veritysetup verify accepted changed data:\n%s", out)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestBadParams: the refusals name the numbers.
func TestBadParams(t *testing.T) {
	for _, c := range []struct {
		size int64
		p    Params
	}{
		{4095, Params{}},
		{0, Params{}},
		{4096, Params{DataBlockSize: 1000}},
		{4096, Params{HashBlockSize: 8192}},
		{4096, Params{Salt: make([]byte, 257)}},
	} {
		if _, err := Write(t.Context(), bytes.NewReader(make([]byte, 8192)), c.size, &memAt{}, c.p); err == nil {
			t.Errorf("size %d, %+v: no error", c.size, c.p)
		}
	}
	if _, err := Write(t.Context(), bytes.NewReader(make([]byte, 4096)), 8192, &memAt{}, Params{}); err == nil {
		t.Error("data shorter than its size: no error")
	}
}
