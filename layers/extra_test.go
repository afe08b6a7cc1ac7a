package layers

import (
	"archive/tar"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"
)

func TestExtraLayerDir(t *testing.T) {
	dir := t.TempDir()
	epoch := time.Unix(1700000000, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc/app"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "etc/app/conf"), []byte("new"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "etc/hosts"), []byte("h"), 0o644))
	must(os.Link(filepath.Join(dir, "etc/hosts"), filepath.Join(dir, "etc/hosts2")))
	must(os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(dir, "etc/localtime")))
	must(os.WriteFile(filepath.Join(dir, "etc/.wh.old"), nil, 0o644))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	old := time.Unix(1500000000, 0)
	must(os.Chtimes(filepath.Join(dir, "etc/hosts"), old, old))
	future := epoch.Add(1000 * time.Hour)
	must(os.Chtimes(filepath.Join(dir, "etc/app/conf"), future, future))
	if l, err := net.Listen("unix", filepath.Join(dir, "sock")); err == nil {
		defer l.Close()
	} else {
		t.Fatalf("making a socket: %v", err)
	}

	base := blobLayer("base", tarOf(t, "etc/", "etc/old=1", "etc/keep=2"), "")
	extra, err := ExtraLayer(dir, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if extra.Name != dir {
		t.Errorf("Name %q", extra.Name)
	}
	got, err := flatten(t, []Layer{base, extra})
	if err != nil {
		t.Fatal(err)
	}
	want := sorted([]string{"etc/", "etc/app/", "etc/app/conf=new", "etc/hosts=h", "etc/hosts2=>etc/hosts",
		"etc/keep=2", "etc/localtime->/usr/share/zoneinfo/UTC", `fifo(type '6')`})
	if !reflect.DeepEqual(sorted(got), want) {
		t.Errorf("got  %q\nwant %q", sorted(got), want)
	}

	// Headers: root:root, modes kept, mtimes clamped.
	rc, err := extra.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d %q:%q", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if h.ModTime.After(epoch) {
			t.Errorf("%s: mtime %v after epoch", h.Name, h.ModTime)
		}
		switch h.Name {
		case "etc/app":
			if h.Mode != 0o750 {
				t.Errorf("etc/app mode %o", h.Mode)
			}
		case "etc/app/conf":
			if h.Mode != 0o640 || !h.ModTime.Equal(epoch) {
				t.Errorf("etc/app/conf: mode %o mtime %v", h.Mode, h.ModTime)
			}
		case "etc/hosts":
			if !h.ModTime.Equal(old) {
				t.Errorf("etc/hosts mtime %v, want %v", h.ModTime, old)
			}
		}
	}
}

func TestExtraLayerTar(t *testing.T) {
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"plain.tar":  tarOf(t, "a=1"),
		"gz.tar.gz":  gzipOf(t, tarOf(t, "a=1")),
		"zs.tar.zst": zstdOf(t, tarOf(t, "a=1")),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := ExtraLayer(p, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		got, err := flatten(t, []Layer{l})
		if err != nil || !reflect.DeepEqual(got, []string{"a=1"}) {
			t.Errorf("%s: got %q, %v", name, got, err)
		}
	}
	if _, err := ExtraLayer(filepath.Join(dir, "missing"), time.Unix(0, 0)); err == nil {
		t.Error("missing path: no error")
	}
}

func TestExtraLayerDeterministic(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"c", "a", "b"} {
		os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644)
	}
	l, _ := ExtraLayer(dir, time.Unix(1, 0))
	var prev []byte
	for i := 0; i < 2; i++ {
		rc := Flatten(context.Background(), []Layer{l})
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && string(prev) != string(b) {
			t.Fatal("output differs between runs")
		}
		prev = b
	}
}
