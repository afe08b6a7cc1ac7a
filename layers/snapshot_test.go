package layers

import (
	"io/fs"
	"strings"
	"testing"
)

// TestSnapshot: metadata of everything, contents of what keep accepts, symlinks followed inside
// the tree, hardlinks, whiteouts of an upper layer applied.
func TestSnapshot(t *testing.T) {
	ls := tarLayers(t,
		[]ent{"etc/", "etc/passwd=root\n", "etc/gone=x", "usr/", "usr/lib/", "usr/lib/big=0123456789", "lib->usr/lib", "etc/hl=>etc/passwd"},
		[]ent{"etc/.wh.gone", "etc/new=new\n", "etc/abs->/etc/passwd", "etc/up->../../../etc/new"},
	)
	fsys, err := Snapshot(t.Context(), ls, func(n string) bool { return strings.HasPrefix(n, "etc/") })
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"etc/passwd": "root\n", "etc/new": "new\n", "etc/abs": "root\n", "etc/hl": "root\n", "etc/up": "new\n"} {
		if b, err := fs.ReadFile(fsys, name); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
	if _, err := fs.Stat(fsys, "etc/gone"); err == nil {
		t.Error("etc/gone: whiteout not applied")
	}
	if fi, err := fs.Stat(fsys, "lib/big"); err != nil || fi.Size() != 10 || fi.Sys().(*SnapshotStat).Uid != 0 {
		t.Errorf("lib/big: %v, %v", fi, err)
	}
	if _, err := fs.ReadFile(fsys, "usr/lib/big"); err == nil || !strings.Contains(err.Error(), "not kept") {
		t.Errorf("usr/lib/big read: %v", err)
	}
	rl := fsys.(fs.ReadLinkFS)
	if l, err := rl.ReadLink("lib"); err != nil || l != "usr/lib" {
		t.Errorf("ReadLink lib: %q, %v", l, err)
	}
	if fi, err := rl.Lstat("lib"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat lib: %v, %v", fi, err)
	}
	ents, err := fs.ReadDir(fsys, "etc")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if err != nil || strings.Join(names, " ") != "abs hl new passwd up" {
		t.Errorf("ReadDir etc: %v, %v", names, err)
	}
	if err := fstestWalk(fsys); err != nil {
		t.Error(err)
	}
}

func fstestWalk(fsys fs.FS) error {
	return fs.WalkDir(fsys, ".", func(string, fs.DirEntry, error) error { return nil })
}

// TestSnapshotCap: the kept contents are capped, the error names the cap.
func TestSnapshotCap(t *testing.T) {
	big := "etc/big=" + strings.Repeat("x", MaxSnapshotBytes/2+1)
	_, err := Snapshot(t.Context(), tarLayers(t, []ent{"etc/", big, strings.Replace(big, "big", "big2", 1)}), func(string) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "64 MiB cap") {
		t.Errorf("error %v", err)
	}
}
