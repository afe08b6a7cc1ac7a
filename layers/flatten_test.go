package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFlattenWhiteouts(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]ent // bottom first
		want   []string
	}{
		{"delete file",
			[][]ent{{"a/", "a/f=1", "a/g=2"}, {"a/.wh.f"}},
			[]string{"a/", "a/g=2"}},
		{"delete dir",
			[][]ent{{"d/", "d/x=1", "e=2"}, {".wh.d"}},
			[]string{"e=2"}},
		{"opaque dir",
			[][]ent{{"d/", "d/x=1", "d/y=2"}, {"d/", "d/.wh..wh..opq", "d/z=3"}},
			[]string{"d/", "d/z=3"}},
		{"opaque dir over two layers",
			[][]ent{{"d/", "d/x=1"}, {"d/", "d/y=2"}, {"d/.wh..wh..opq", "d/z=3"}},
			[]string{"d/", "d/z=3"}},
		{"file replaces dir",
			[][]ent{{"d/", "d/x=1", "d/sub/", "d/sub/y=2"}, {"d=file"}},
			[]string{"d=file"}},
		{"dir replaces file",
			[][]ent{{"d=file"}, {"d/", "d/x=1"}},
			[]string{"d/", "d/x=1"}},
		{"dirs merge, top metadata and file win",
			[][]ent{{"./", "etc/", "etc/a=low", "etc/b=low"}, {"etc/", "etc/a=high"}},
			[]string{"./", "etc/", "etc/a=high", "etc/b=low"}},
		{"whiteout does not hide own layer's file",
			[][]ent{{"a=old"}, {".wh.a", "a=new"}},
			[]string{"a=new"}},
		{"whiteout does not hide own layer's dir",
			[][]ent{{"d/", "d/old=1"}, {".wh.d", "d/", "d/new=2"}},
			[]string{"d/", "d/new=2"}},
		{"whiteout after own entry",
			[][]ent{{"d/", "d/old=1"}, {"d/", "d/new=2", ".wh.d"}},
			[]string{"d/", "d/new=2"}},
		{"three layers: delete then recreate",
			[][]ent{{"a/", "a/b/", "a/b/c=0"}, {"a/.wh.b"}, {"a/b/", "a/b/d=1"}},
			[]string{"a/", "a/b/", "a/b/d=1"}},
		{"hardlinks within a layer",
			[][]ent{{"./bin/", "./bin/f=x", "./bin/h=>./bin/f", "bin/g=>bin/h"}},
			[]string{"bin/", "bin/f=x", "bin/g=>bin/h", "bin/h=>bin/f"}},
		{"hardlink to lower layer's file",
			[][]ent{{"f=x"}, {"h=>f"}},
			[]string{"f=x", "h=>f"}},
		{"hardlink whose target an upper layer deleted",
			[][]ent{{"f=data", "h=>f", "g=>h", "k=>f"}, {".wh.f"}},
			[]string{"h=data", "g=>h", "k=>h"}},
		{"hardlink whose target an upper layer replaced",
			[][]ent{{"f=old", "x=1", "h=>f"}, {"f=new"}},
			[]string{"f=new", "x=1", "h=old"}},
		{"hardlink chain through hidden links",
			[][]ent{{"f=data", "h=>f", "g=>h"}, {".wh.f", ".wh.h"}},
			[]string{"g=data"}},
		{"hardlink chain through hidden link to visible file",
			[][]ent{{"f=data", "h=>f", "g=>h"}, {".wh.h"}},
			[]string{"f=data", "g=>f"}},
		{"hardlinks to a lower file, chained in one layer",
			[][]ent{{"f=x"}, {"h=>f", "g=>h"}},
			[]string{"f=x", "h=>f", "g=>h"}},
		{"hardlink through hidden link to lower file",
			[][]ent{{"f=x"}, {"h=>f", "g=>h"}, {".wh.h"}},
			[]string{"f=x", "g=>f"}},
		{"hardlink to hardlink in lower layer",
			[][]ent{{"f=x"}, {"g=>f"}, {"h=>g"}},
			[]string{"f=x", "g=>f", "h=>g"}},
		{"upper implied dir shadows lower symlink",
			[][]ent{{"etc->/tmp", "keep=1"}, {"etc/x=1"}},
			[]string{"etc/x=1", "keep=1"}},
		{"upper implied dir keeps lower dir metadata",
			[][]ent{{"etc/", "etc/y=2"}, {"etc/x=1"}},
			[]string{"etc/", "etc/x=1", "etc/y=2"}},
		{"symlink hides lower dir",
			[][]ent{{"lib/", "lib/x=1"}, {"lib->usr/lib"}},
			[]string{"lib->usr/lib"}},
		{"names cleaned",
			[][]ent{{"./a/../b=1", "c//d/./e=2"}},
			[]string{"b=1", "c/d/e=2"}},
		{"duplicate in one layer: first stays",
			[][]ent{{"a=1", "a=2", "d/", "d/"}},
			[]string{"a=1", "d/"}},
		{"aufs metadata skipped",
			[][]ent{{".wh..wh.plnk/", "x=1"}},
			[]string{"x=1"}},
		{"opaque root",
			[][]ent{{"a=1"}, {".wh..wh..opq", "b=2"}},
			[]string{"b=2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := flatten(t, tarLayers(t, tc.layers...))
			if err != nil {
				t.Fatalf("Flatten: %v", err)
			}
			if !reflect.DeepEqual(sorted(got), sorted(tc.want)) {
				t.Errorf("got  %q\nwant %q", sorted(got), sorted(tc.want))
			}
		})
	}
}

func TestFlattenOrderTopFirst(t *testing.T) {
	got, err := flatten(t, tarLayers(t, []ent{"low=1"}, []ent{"mid=2", "l=>low"}, []ent{"top=3"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"top=3", "mid=2", "low=1", "l=>low"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order: got %q, want %q", got, want)
	}
}

func TestFlattenKeepsMetadata(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mt := time.Unix(1600000000, 0)
	at := time.Unix(1600000001, 5)
	hs := []*tar.Header{
		{Name: "./f", Typeflag: tar.TypeReg, Mode: 04755, Uid: 1000, Gid: 2000, Uname: "u", Gname: "g",
			ModTime: time.Unix(1600000000, 123456789), AccessTime: at, ChangeTime: at, Size: 3, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "SCHILY.xattr.user.x": "y"}},
		{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mt},
		{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8, Devminor: 0, ModTime: mt},
		{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600, ModTime: mt},
	}
	for _, h := range hs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("abc"))
		}
	}
	tw.Close()
	rc := Flatten(context.Background(), []Layer{blobLayer("L0", b.Bytes(), "")})
	defer rc.Close()
	tr := tar.NewReader(rc)
	for i := range hs {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		w := hs[i]
		wname := strings.TrimPrefix(w.Name, "./")
		if h.Name != wname || h.Typeflag != w.Typeflag || h.Mode != w.Mode || h.Uid != w.Uid || h.Gid != w.Gid ||
			!h.ModTime.Equal(w.ModTime) || h.Devmajor != w.Devmajor || h.Devminor != w.Devminor {
			t.Errorf("entry %d: got %+v, want %+v", i, h, w)
		}
		if i == 0 {
			if !h.AccessTime.Equal(at) || !h.ChangeTime.Equal(at) || h.Uname != "u" || h.Gname != "g" {
				t.Errorf("times/names not kept: %+v", h)
			}
			for k, v := range w.PAXRecords {
				if h.PAXRecords[k] != v {
					t.Errorf("PAX record %s: got %q, want %q", k, h.PAXRecords[k], v)
				}
			}
			if body, _ := io.ReadAll(tr); string(body) != "abc" {
				t.Errorf("body %q", body)
			}
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("want end of stream, got %v", err)
	}
}

func TestFlattenHostile(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name   string
		layers [][]ent
		entry  string // entry named in the error
		reason string // substring of the reason
	}{
		{"dotdot path", [][]ent{{"../x=1"}}, "../x", "path escapes the image root"},
		{"dotdot inside", [][]ent{{"a/../../x=1"}}, "a/../../x", "path escapes the image root"},
		{"absolute name", [][]ent{{"/etc/x=1"}}, "/etc/x", "absolute"},
		{"symlink dir then file through it", [][]ent{{"etc->/tmp", "etc/x=1"}}, "etc/x", "parent etc is a symlink"},
		{"relative symlink dir", [][]ent{{"a/", "a/l->..", "a/l/x=1"}}, "a/l/x", "parent a/l is a symlink"},
		{"file through it after", [][]ent{{"etc/x=1", "etc->/tmp"}}, "etc", "replaces a directory"},
		{"hardlink outside", [][]ent{{"h=>../../etc/shadow"}}, "h", "escapes"},
		{"hardlink absolute", [][]ent{{"h=>/etc/shadow"}}, "h", "absolute"},
		{"hardlink to missing name", [][]ent{{"a=1"}, {"h=>nope"}}, "h", "hardlink to missing name"},
		{"hardlink to later name", [][]ent{{"h=>f", "f=1"}}, "h", "hardlink to missing name"},
		{"hardlink to directory", [][]ent{{"d/", "h=>d"}}, "h", "hardlink to a directory"},
		{"hardlink to lower directory", [][]ent{{"d/"}, {"h=>d"}}, "h", "hardlink to a directory"},
		{"hardlink through symlink", [][]ent{{"s->/etc", "h=>s/passwd"}}, "h", "symlink"},
		{"hardlink cycle through hidden links", [][]ent{{"a=>b", "b=>a", "c=>a"}, {".wh.a", ".wh.b"}}, "c", "cycle"},
		{"whiteout of dotdot", [][]ent{{"a/.wh..."}}, "a/.wh...", "whiteout of .."},
		{"whiteout of root", [][]ent{{".wh.."}}, ".wh..", "whiteout of . "},
		{"whiteout prefix as dir", [][]ent{{".wh.a/b=1"}}, ".wh.a/b", "whiteout prefix"},
		{"long component", [][]ent{{"a/" + long + "=1"}}, "a/" + long, "255"},
		{"root not a dir", [][]ent{{".=x"}}, ".", "root is not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := flatten(t, tarLayers(t, tc.layers...))
			ue := asUnsafe(err)
			if ue == nil {
				t.Fatalf("want *UnsafeEntryError, got %v (entries %q)", err, got)
			}
			if !strings.HasPrefix(ue.Layer, "L") || ue.Entry != tc.entry || !strings.Contains(ue.Reason, tc.reason) {
				t.Errorf("got %v; want entry %q, reason containing %q", ue, tc.entry, tc.reason)
			}
			if !strings.Contains(err.Error(), "layer "+ue.Layer+": entry ") {
				t.Errorf("message %q does not name layer and entry", err)
			}
		})
	}
}

// rawTar writes headers without archive/tar's checks of the name (for NUL and odd typeflags).
func rawHeader(name string, typ byte) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], "00000000000\x00")
	copy(b[136:148], "00000000000\x00")
	b[156] = typ
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], []byte(strings.Repeat("0", 0)+octal6(sum)+"\x00 "))
	return b
}

func octal6(n int) string {
	s := ""
	for i := 0; i < 6; i++ {
		s = string(rune('0'+n%8)) + s
		n /= 8
	}
	return s
}

func TestFlattenHostileRaw(t *testing.T) {
	t.Run("socket typeflag", func(t *testing.T) {
		blob := append(rawHeader("sock", 'X'), make([]byte, 1024)...)
		_, err := flatten(t, []Layer{blobLayer("L0", blob, "")})
		if ue := asUnsafe(err); ue == nil || ue.Entry != "sock" || !strings.Contains(ue.Reason, "unsupported tar entry type") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("NUL in name", func(t *testing.T) {
		// archive/tar stops a USTAR name at NUL, so a NUL can only come through a PAX record,
		// which archive/tar itself refuses; check both layers of the defence.
		if _, why := cleanName("a\x00b"); !strings.Contains(why, "NUL") {
			t.Errorf("cleanName accepts NUL: %q", why)
		}
		var b bytes.Buffer
		rec := "a\x00b"
		pax := "path=" + rec + "\n"
		pax = itoa(len(pax)+len(itoa(len(pax)+3))+1) + " " + pax
		b.Write(rawHeaderSize("PaxHeader", 'x', len(pax)))
		b.WriteString(pax)
		b.Write(make([]byte, (512-len(pax)%512)%512))
		b.Write(rawHeader("a", '0'))
		b.Write(make([]byte, 1024))
		_, err := flatten(t, []Layer{blobLayer("L0", b.Bytes(), "")})
		if err == nil || !strings.Contains(err.Error(), "layer L0") {
			t.Fatalf("want an error naming the layer, got %v", err)
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

func rawHeaderSize(name string, typ byte, size int) []byte {
	b := rawHeader(name, typ)
	sz := ""
	n := size
	for i := 0; i < 11; i++ {
		sz = string(rune('0'+n%8)) + sz
		n /= 8
	}
	copy(b[124:136], sz+"\x00")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], octal6(sum)+"\x00 ")
	return b
}

func TestFlattenBadStreams(t *testing.T) {
	good := tarOf(t, "a/", "a/big="+strings.Repeat("z", 5000), "b=1")
	gz := gzipOf(t, good)
	zs := zstdOf(t, good)
	tests := []struct {
		name  string
		layer Layer
		want  string
	}{
		{"bad digest", blobLayer("sha256:bad", gz, strings.Repeat("0", 64)), "digest mismatch"},
		{"bad digest plain tar", blobLayer("sha256:bad", good, strings.Repeat("1", 64)), "digest mismatch"},
		{"truncated gzip", blobLayer("sha256:gz", gz[:len(gz)-20], ""), "truncated"},
		{"truncated zstd", blobLayer("sha256:zs", zs[:len(zs)/2], ""), "zstd"},
		{"truncated tar", blobLayer("sha256:tar", good[:1500], ""), "truncated"},
		{"not a tar", blobLayer("sha256:txt", []byte(strings.Repeat("hello, this is not a tar\n", 40)), ""), "tar"},
		{"gzip of not a tar", blobLayer("sha256:gtxt", gzipOf(t, []byte(strings.Repeat("not a tar\n", 100))), ""), "tar"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := flatten(t, []Layer{tc.layer})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "layer "+tc.layer.Name) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want it to name layer %s and say %q", err, tc.layer.Name, tc.want)
			}
			if tc.want == "digest mismatch" {
				var de *DigestError
				if !errors.As(err, &de) || de.Got == "" || de.Want == "" ||
					!strings.Contains(err.Error(), de.Want) || !strings.Contains(err.Error(), de.Got) {
					t.Errorf("want *DigestError naming both digests, got %v", err)
				}
			}
		})
	}
}

func TestFlattenCancel(t *testing.T) {
	big := tarOf(t, "f="+strings.Repeat("x", 8<<20))
	ctx, cancel := context.WithCancel(context.Background())
	rc := Flatten(ctx, []Layer{blobLayer("L0", big, "")})
	defer rc.Close()
	buf := make([]byte, 1024)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err := io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: got %v, want context.Canceled", err)
	}
}

func TestFlattenCloseEarly(t *testing.T) {
	big := tarOf(t, "f="+strings.Repeat("x", 8<<20))
	rc := Flatten(context.Background(), []Layer{blobLayer("L0", big, "")})
	buf := make([]byte, 1024)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	rc.Close() // must return: the producer stops at its next write
	if _, err := rc.Read(buf); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

// TestFlattenReadsAhead shows the producer runs ahead: without any Read, it fills the whole
// buffer of the pipe (it blocks only when pipeChunks chunks wait).
func TestFlattenReadsAhead(t *testing.T) {
	big := gzipOf(t, tarOf(t, "f="+strings.Repeat("x", 32<<20)))
	rc := Flatten(context.Background(), []Layer{blobLayer("L0", big, "")})
	defer rc.Close()
	fr := rc.(*flattenReader)
	deadline := time.Now().Add(20 * time.Second)
	for len(fr.full) < pipeChunks {
		if time.Now().After(deadline) {
			t.Fatalf("producer filled only %d of %d chunks without a reader", len(fr.full), pipeChunks)
		}
		time.Sleep(5 * time.Millisecond)
	}
	n, err := io.Copy(io.Discard, rc)
	if err != nil || n < 32<<20 {
		t.Fatalf("copy: %d bytes, %v", n, err)
	}
}

func TestFlattenDeterministic(t *testing.T) {
	ls := tarLayers(t, []ent{"a/", "a/x=1", "b=>a/x", "c->a"}, []ent{"a/.wh.x", "a/y=2", "d=>b"}, []ent{"e/", "e/f=3"})
	var outs [][]byte
	for i := 0; i < 3; i++ {
		rc := Flatten(context.Background(), ls)
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		outs = append(outs, b)
	}
	if !bytes.Equal(outs[0], outs[1]) || !bytes.Equal(outs[0], outs[2]) {
		t.Error("Flatten output differs between runs")
	}
}
