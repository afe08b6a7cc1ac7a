package layers

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestFlattenNumbers: ids, times and modes the filesystem would narrow are refused, naming the
// layer, the entry and the value; the ends of each range are kept.
func TestFlattenNumbers(t *testing.T) {
	base := func() tar.Header {
		return tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o4755, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
	}
	for _, c := range []struct {
		name string
		set  func(h *tar.Header)
		want string // "" = accepted
	}{
		{"uid 2^32", func(h *tar.Header) { h.Uid = 1 << 32 }, "uid 4294967296 out of range (0 to 4294967294)"},
		{"uid 2^32-1", func(h *tar.Header) { h.Uid = 1<<32 - 1 }, "uid 4294967295 out of range"},
		{"uid 2^32-2", func(h *tar.Header) { h.Uid = 1<<32 - 2 }, ""},
		{"gid -1", func(h *tar.Header) { h.Gid = -1 }, "gid -1 out of range"},
		{"gid 2^40 GNU", func(h *tar.Header) { h.Gid, h.Format = 1<<40, tar.FormatGNU }, "gid 1099511627776 out of range"},
		{"mtime -2^33", func(h *tar.Header) { h.ModTime = time.Unix(-1<<33, 0) }, "mtime -8589934592 out of range: the filesystem stores -2147483648 (1901-12-13T20:45:52Z) to 15032385535 (2446-05-10T22:38:55Z)"},
		{"mtime 2^40", func(h *tar.Header) { h.ModTime = time.Unix(1<<40, 0) }, "mtime 1099511627776 out of range"},
		{"mtime -2^40", func(h *tar.Header) { h.ModTime = time.Unix(-1<<40, 0) }, "mtime -1099511627776 out of range"},
		{"mtime MinTime", func(h *tar.Header) { h.ModTime = time.Unix(MinTime, 0) }, ""},
		{"mtime MinTime-1", func(h *tar.Header) { h.ModTime = time.Unix(MinTime-1, 999999999) }, "mtime -2147483649 out of range"},
		{"mtime MaxTime", func(h *tar.Header) { h.ModTime = time.Unix(MaxTime, 999999999) }, ""},
		{"mtime MaxTime+1", func(h *tar.Header) { h.ModTime = time.Unix(MaxTime+1, 0) }, "mtime 15032385536 out of range"},
		{"mtime GNU -2^33", func(h *tar.Header) { h.ModTime, h.Format = time.Unix(-1<<33, 0), tar.FormatGNU }, "mtime -8589934592 out of range"},
		{"atime 2^40", func(h *tar.Header) { h.AccessTime = time.Unix(1<<40, 0) }, "atime 1099511627776 out of range"},
		{"ctime -2^33", func(h *tar.Header) { h.ChangeTime = time.Unix(-1<<33, 0) }, "ctime -8589934592 out of range"},
		{"mode beyond type bits", func(h *tar.Header) { h.Mode = 0o1004755 }, "mode 01004755 out of range"},
		{"mode with type bits", func(h *tar.Header) { h.Mode = 0o104755 }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := base()
			c.set(&h)
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			got, err := flatten(t, []Layer{blobLayer("L0", b.Bytes(), "")})
			if c.want == "" {
				if err != nil || len(got) != 1 {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			ue := asUnsafe(err)
			if ue == nil || ue.Layer != "L0" || ue.Entry != "f" || !strings.Contains(ue.Reason, c.want) {
				t.Fatalf("got %v, want layer L0, entry f, %q", err, c.want)
			}
		})
	}
}

// TestFlattenHardlinkHidden: a hardlink to a name hidden from it is reported naming the link's
// layer, the link and its target and why the target is not there — and the error comes after the
// entries before it, whole: not in the middle of the data of the big file that ends layer 0.
func TestFlattenHardlinkHidden(t *testing.T) {
	big := "zbig=" + strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB: more than the pipe's chunks
	for _, c := range []struct {
		name   string
		layers [][]ent
		want   string
	}{
		{"whited out", [][]ent{{"a=1", big}, {".wh.a", "l=>a"}}, `hardlink to missing name a: the target "a" was whited out by layer L1`},
		{"whited out below the link", [][]ent{{"a=1", big}, {".wh.a"}, {"l=>a"}}, `the target "a" was whited out by layer L1`},
		{"whited out above the link", [][]ent{{"a=1", big}, {"l=>a"}, {".wh.a"}}, `the target "a" was whited out by layer L2`},
		{"directory whited out", [][]ent{{"d/", "d/a=1", big}, {".wh.d", "l=>d/a"}}, `the target "d/a" was whited out (its directory d) by layer L1`},
		{"opaque", [][]ent{{"d/", "d/a=1", big}, {"d/", "d/.wh..wh..opq", "l=>d/a"}}, `the target "d/a" was hidden (the opaque directory d) by layer L1`},
		{"directory replaced by a file", [][]ent{{"d/", "d/a=1", big}, {"d=file"}, {"l=>d/a"}}, "d is not a directory (layer L1)"},
		{"replaced above", [][]ent{{big}, {"l=>a"}, {"a=2"}}, "the name is replaced by layer L2, above the link"},
		{"later in the layer", [][]ent{{big}, {"l=>a", "a=1"}}, "it comes after the link in the same layer"},
		{"missing", [][]ent{{big}, {"l=>nothere"}}, "hardlink to missing name nothere"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ls := tarLayers(t, c.layers...)
			rc := Flatten(t.Context(), ls)
			defer rc.Close()
			tr := tar.NewReader(rc)
			var err error
			for {
				var h *tar.Header
				if h, err = tr.Next(); err != nil {
					break
				}
				if _, rerr := io.Copy(io.Discard, tr); rerr != nil {
					t.Fatalf("the error came in the data of %q: %v", h.Name, rerr)
				}
			}
			var ue *UnsafeEntryError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v", err)
			}
			if ue.Entry != "l" || ue.Layer != linkLayer(c.layers) || !strings.Contains(ue.Reason, c.want) {
				t.Errorf("got %v, want layer %s, entry l, %q", err, linkLayer(c.layers), c.want)
			}
		})
	}
}

// linkLayer is the name of the layer holding the entry "l".
func linkLayer(ls [][]ent) string {
	for i, l := range ls {
		for _, e := range l {
			if strings.HasPrefix(e, "l=>") {
				return "L" + itoa(i)
			}
		}
	}
	return ""
}

// TestFlattenRepeatedLayer: a layer named by a digest that a layer above has too is not read
// again; a layer named by a path (an --layer) is.
func TestFlattenRepeatedLayer(t *testing.T) {
	raw := tarOf(t, "d/", "d/a=1", "d/.wh.b")
	opens := map[string]int{}
	mk := func(name string) Layer {
		l := blobLayer(name, raw, "")
		open := l.Open
		l.Open = func() (io.ReadCloser, error) { opens[name]++; return open() }
		return l
	}
	ls := []Layer{mk("L0")}
	for i := 0; i < 500; i++ {
		ls = append(ls, mk("sha256:"+digestOf(raw)), mk("/extra"))
	}
	got, err := flatten(t, ls)
	if err != nil || strings.Join(sorted(got), " ") != "d/ d/a=1" {
		t.Fatalf("got %q, %v", got, err)
	}
	if opens["sha256:"+digestOf(raw)] != 1 || opens["/extra"] != 500 {
		t.Errorf("opens %v", opens)
	}
}

// TestFlattenHiddenLinkChain: links to the head of a long chain of hidden hardlinks walk the
// chain once, not once per link (quadratic work in a few MiB of layer).
func TestFlattenHiddenLinkChain(t *testing.T) {
	const k = 3000
	lower := []ent{"x=data"}
	upper := []ent{".wh.x"}
	prev := "x"
	for i := 0; i < k; i++ {
		h := "h" + itoa(i)
		lower = append(lower, h+"=>"+prev)
		upper = append(upper, ".wh."+h)
		prev = h
	}
	for i := 0; i < k; i++ {
		lower = append(lower, "v"+itoa(i)+"=>"+prev, "w"+itoa(i)+"=>h"+itoa(i))
	}
	ls := tarLayers(t, lower, upper)
	p := newBufPipe(t.Context())
	f := newFlattener(t.Context(), tar.NewWriter(p))
	go func() {
		for {
			if _, err := p.Read(make([]byte, 1<<16)); err != nil {
				return
			}
		}
	}()
	if err := f.run(ls); err != nil {
		t.Fatal(err)
	}
	p.closeWrite(nil)
	if f.linkSteps > 8*k { // without the shortcut: k*k
		t.Errorf("%d steps along hidden links for %d links to a chain of %d", f.linkSteps, 2*k, k)
	}
	got, err := flatten(t, ls)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*k || got[0] != "v0=data" {
		t.Errorf("%d entries, first %q", len(got), got[0])
	}
}

// TestFlattenDeepNames: a name as long as Linux allows (4,095 bytes) and 2,000 deep costs work in
// proportion to its length, not its length times its depth (a map keyed by each ancestor's path
// hashed 4 MB for each such entry); longer names are refused.
func TestFlattenDeepNames(t *testing.T) {
	deep := func(top string, i int) string { return top + strings.Repeat("/a", 2040) + "/" + itoa(i) }
	var es []ent
	names := 0
	for i := 0; i < 200; i++ {
		n := deep([]string{"x", "y"}[i%2], i) // alternating: no help from the last directory
		es = append(es, n+"=")
		names += len(n)
	}
	ls := tarLayers(t, es)
	f := newFlattener(t.Context(), tar.NewWriter(io.Discard))
	if err := f.run(ls); err != nil {
		t.Fatal(err)
	}
	if f.paths.hashed > 2*names {
		t.Errorf("%d bytes of names hashed for %d bytes of names", f.paths.hashed, names)
	}
	got, err := flatten(t, ls)
	if err != nil || len(got) != 200 {
		t.Fatalf("%d entries, %v", len(got), err)
	}
	long := strings.Repeat("d/", 2048) + "f"
	_, err = flatten(t, tarLayers(t, []ent{long + "=x"}))
	ue := asUnsafe(err)
	if ue == nil || ue.Entry != long || !strings.Contains(ue.Reason, "name of 4097 bytes (limit 4095, PATH_MAX)") {
		t.Fatalf("got %v", err)
	}
	if msg := err.Error(); len(msg) > 1500 || !strings.Contains(msg, "(4097 bytes)") {
		t.Errorf("message of %d bytes: %.300s", len(msg), msg)
	}
	_, err = flatten(t, tarLayers(t, []ent{"f=x", "l=>" + long}))
	if ue := asUnsafe(err); ue == nil || ue.Entry != "l" || !strings.Contains(ue.Reason, "PATH_MAX") {
		t.Fatalf("link: got %v", err)
	}
}
