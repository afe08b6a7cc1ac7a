package ext4

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
)

func vfsACL(entries ...[3]uint32) string {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return string(b)
}

// capNetRaw is security.capability for cap_net_raw+ep (EXT4.md §8).
var capNetRaw = string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed | 1
	}
	return b
}

// richTree exercises every entry type and attribute the writer supports.
func richTree() []entry {
	long := strings.Repeat("t", 200)
	sparse := make([]byte, 5*bs+100)
	copy(sparse[bs:], pattern(bs, 3))      // block 1 data, blocks 0, 2, 3 holes
	copy(sparse[4*bs+50:], pattern(40, 9)) // partial last block
	es := []entry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: ".", Mode: 0755, Uid: 0, Gid: 0, ModTime: testTime}},
		// child before its parent: parent created implicitly and updated later
		reg("opt/app/bin/tool", 0755, "tool"),
		hardlink("opt/app/bin/tool-link-early", "usr/bin/late-target"), // target comes later
		reg("usr/bin/late-target", 0644, "late target data"),
		reg("usr/bin/passwd", 04755, string(pattern(9000, 1))),
		reg("usr/bin/wall", 02755, "wall"),
		dir("tmp", 01777),
		dir("opt/app", 0750),
		reg("empty", 0600, ""),
		reg("zeros", 0600, string(make([]byte, 1<<20+5))), // all holes
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sparse", Mode: 0644, Size: int64(len(sparse)), ModTime: testTime}, body: sparse},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "owned", Mode: 0640, Uid: 70000, Gid: 80000, Size: 3, ModTime: testTime,
			AccessTime: time.Unix(-86401, 1), ChangeTime: time.Unix(4102444800, 999999999)}, body: []byte("own")},
		hardlink("usr/bin/passwd-hl", "usr/bin/passwd"),
		hardlink("hl2", "usr/bin/passwd"),
		symlink("fast", "usr/bin/passwd"),
		symlink("slow", "/"+long),
		symlink("abs-lib", "/usr/lib"),
		symlink("usr/lib", "../opt/app"),
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0666, Devmajor: 1, Devminor: 3, ModTime: testTime}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0660, Gid: 6, Devmajor: 8, Devminor: 0, ModTime: testTime}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/big", Mode: 0600, Devmajor: 300, Devminor: 70000, ModTime: testTime}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0644, ModTime: testTime}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/ping", Mode: 0755, Size: 4, ModTime: testTime,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capNetRaw}}, body: []byte("ping")},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "xattrs", Mode: 0644, Size: 1, ModTime: testTime,
			PAXRecords: map[string]string{
				"SCHILY.xattr.user.a":          "1",
				"SCHILY.xattr.user.bb":         "22",
				"SCHILY.xattr.user.big":        strings.Repeat("v", 1000),
				"SCHILY.xattr.user.mime_type":  "text/plain",
				"SCHILY.xattr.trusted.overlay": "y",
				"SCHILY.xattr.user.zz":         strings.Repeat("z", 100),
			}}, body: []byte("x")},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "acl", Mode: 0770, ModTime: testTime,
			PAXRecords: map[string]string{
				"SCHILY.xattr.system.posix_acl_access": vfsACL([3]uint32{1, 7, 0xFFFFFFFF}, [3]uint32{2, 5, 1000},
					[3]uint32{4, 5, 0xFFFFFFFF}, [3]uint32{0x10, 5, 0xFFFFFFFF}, [3]uint32{0x20, 0, 0xFFFFFFFF}),
				"SCHILY.xattr.system.posix_acl_default": vfsACL([3]uint32{1, 7, 0xFFFFFFFF}, [3]uint32{4, 5, 0xFFFFFFFF},
					[3]uint32{0x20, 0, 0xFFFFFFFF}),
			}}},
		reg("names/"+strings.Repeat("n", 255), 0644, "longest name"),
		reg("names/\xff\x01 odd", 0644, "odd bytes"),
	}
	for i := 0; i < 300; i++ { // 4 blocks: written as an htree
		es = append(es, reg("many/file-"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+itoa(i), 0644, itoa(i)))
	}
	return es
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func debugfs(t *testing.T, img string, cmds ...string) string {
	t.Helper()
	bin := testtool.Need(t, "debugfs", "e2fsprogs")
	f := filepath.Join(t.TempDir(), "cmds")
	os.WriteFile(f, []byte(strings.Join(cmds, "\n")+"\n"), 0644)
	out, err := exec.Command(bin, "-f", f, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	return string(out)
}

func TestRichTree(t *testing.T) {
	img, w := build(t, testOpts, richTree())
	if k := os.Getenv("EXT4_KEEP"); k != "" {
		exec.Command("cp", "--sparse=always", img, k).Run()
	}
	fsckClean(t, img)
	fsckNoChange(t, img)

	st := w.Stats()
	if st.Hardlinks != 3 || st.Symlinks != 4 || st.Devices != 3 || st.Fifos != 1 {
		t.Errorf("stats %+v", st)
	}
	checks := map[string][]string{
		"/usr/bin/passwd":      {"Mode:  04755", "Links: 3", "Size: 9000"},
		"/usr/bin/late-target": {"Links: 2"},
		"/usr/bin/wall":        {"Mode:  02755"},
		"/tmp":                 {"Mode:  01777"},
		"/opt/app":             {"Mode:  0750", "Links: 3"},
		"/owned":               {"User: 70000   Group: 80000", "ctime: 0xf4865700:ee6b27fd", "atime: 0xfffeae7f:00000004", "mtime: 0x5f5e1000:1d6f3454"},
		"/dev/null":            {"Type: character special", "Device major/minor number: 01:03"},
		"/dev/sda":             {"Type: block special", "Device major/minor number: 08:00", "Group:     6"},
		"/dev/big":             {"Device major/minor number: 300:70000"},
		"/run/fifo":            {"Type: FIFO"},
		"/fast":                {"Type: symlink", `Fast link dest: "usr/bin/passwd"`},
		"/slow":                {"Type: symlink", "Size: 201", "Flags: 0x80000"},
		"/sparse":              {"Size: 20580", "Blockcount: 16"},
		"/empty":               {"Size: 0", "Flags: 0x80000"},
		"/zeros":               {"Size: 1048581", "Blockcount: 0"},
		"/":                    {"Links: 11"},
		"/lost+found":          {"Mode:  0700", "Size: 16384"},
	}
	var cmds []string
	for p := range checks {
		cmds = append(cmds, "stat "+p)
	}
	for p, want := range checks {
		out := debugfs(t, img, "stat "+p)
		for _, s := range want {
			if !strings.Contains(out, s) {
				t.Errorf("stat %s: missing %q in\n%s", p, s, out)
			}
		}
	}
	ea := debugfs(t, img, "ea_list /usr/bin/ping", "ea_list /xattrs", "ea_list /acl")
	for _, s := range []string{
		"security.capability (20) = 01 00 00 02 00 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
		`user.a (1) = "1"`, `user.bb (2) = "22"`, `user.mime_type (10) = "text/plain"`, `trusted.overlay (1) = "y"`,
		"user.big (1000)", "user.zz (100)",
		"system.posix_acl_access (28)", "system.posix_acl_default",
	} {
		if !strings.Contains(ea, s) {
			t.Errorf("ea_list: missing %q in\n%s", s, ea)
		}
	}

	// Contents: rdump and compare every regular file.
	out := t.TempDir()
	debugfs(t, img, "rdump / "+out)
	for _, e := range richTree() {
		if e.hdr.Typeflag != tar.TypeReg {
			continue
		}
		got, err := os.ReadFile(filepath.Join(out, e.hdr.Name))
		if err != nil {
			t.Errorf("rdump %s: %v", e.hdr.Name, err)
			continue
		}
		if !bytes.Equal(got, e.body) {
			t.Errorf("content of %s differs: %d bytes, want %d", e.hdr.Name, len(got), len(e.body))
		}
	}

}
