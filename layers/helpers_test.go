package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ent describes a tar entry in a compact form:
// "name/" dir, "name=body" file, "name->target" symlink, "name=>target" hardlink, "name" empty file.
type ent = string

func hdrOf(s ent) (*tar.Header, string) {
	h := &tar.Header{Mode: 0o644, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
	body := ""
	switch {
	case strings.Contains(s, "=>"):
		i := strings.Index(s, "=>")
		h.Name, h.Linkname, h.Typeflag = s[:i], s[i+2:], tar.TypeLink
	case strings.Contains(s, "->"):
		i := strings.Index(s, "->")
		h.Name, h.Linkname, h.Typeflag = s[:i], s[i+2:], tar.TypeSymlink
		h.Mode = 0o777
	case strings.Contains(s, "="):
		i := strings.Index(s, "=")
		h.Name, body, h.Typeflag = s[:i], s[i+1:], tar.TypeReg
	case strings.HasSuffix(s, "/"):
		h.Name, h.Typeflag, h.Mode = s, tar.TypeDir, 0o755
	default:
		h.Name, h.Typeflag = s, tar.TypeReg
	}
	h.Size = int64(len(body))
	return h, body
}

func tarOf(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h, body := hdrOf(e)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("writing test tar entry %q: %v", e, err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var o bytes.Buffer
	zw := gzip.NewWriter(&o)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return o.Bytes()
}

func zstdOf(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// blobLayer is a layer from a (possibly compressed) blob, checked like an image layer against
// wantHex ("" = the blob's own digest).
func blobLayer(name string, blob []byte, wantHex string) Layer {
	if wantHex == "" {
		wantHex = digestOf(blob)
	}
	return Layer{Name: name, Open: func() (io.ReadCloser, error) {
		rc := io.NopCloser(bytes.NewReader(blob))
		v := &verifyReader{r: rc, h: sha256.New(), layer: name, want: wantHex, size: int64(len(blob)), what: "blob"}
		return decompress(name, v, rc)
	}}
}

// tarLayers makes layer i named "L<i>" from ents[i] (bottom first).
func tarLayers(t testing.TB, ents ...[]ent) []Layer {
	var ls []Layer
	for i, e := range ents {
		ls = append(ls, blobLayer(fmt.Sprintf("L%d", i), tarOf(t, e...), ""))
	}
	return ls
}

// readAll reads a Flatten stream into the compact ent form, in stream order, and fails on a path
// seen twice.
func readAll(t testing.TB, r io.Reader) ([]string, error) {
	t.Helper()
	tr := tar.NewReader(r)
	var out []string
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if seen[h.Name] {
			t.Errorf("path %q appears twice in the output", h.Name)
		}
		seen[h.Name] = true
		body, err := io.ReadAll(tr)
		if err != nil {
			return out, err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			out = append(out, h.Name+"/")
		case tar.TypeSymlink:
			out = append(out, h.Name+"->"+h.Linkname)
		case tar.TypeLink:
			out = append(out, h.Name+"=>"+h.Linkname)
		case tar.TypeReg:
			if len(body) == 0 {
				out = append(out, h.Name)
			} else {
				out = append(out, h.Name+"="+string(body))
			}
		default:
			out = append(out, fmt.Sprintf("%s(type %q)", h.Name, h.Typeflag))
		}
	}
}

func flatten(t testing.TB, ls []Layer) ([]string, error) {
	t.Helper()
	rc := Flatten(context.Background(), ls)
	defer rc.Close()
	return readAll(t, rc)
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func asUnsafe(err error) *UnsafeEntryError {
	var ue *UnsafeEntryError
	if errors.As(err, &ue) {
		return ue
	}
	return nil
}
