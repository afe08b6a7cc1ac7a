package spec

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/partition"
)

const edKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1hA2Yb+0lq0U2d4sO2mUpQzQbqk5cZ3gWq8v9m0Xx ops@example"

// full uses every key.
var full = `# every key
classes:
  web:
    from: oci:./layout:debian
    platforms: [linux/amd64, linux/arm64/v8]
    layers: [./overlay, /abs/extra.tar]
    kernel: {cmdline: console=ttyS0 quiet}
    boot: {mode: uefi, table: gpt, uki: true}
    disk: {size: 4GiB}
    esp_size: 512MiB
    source_date_epoch: 1700000000
    no_journal: true
    files:
      - {path: /etc/motd, content: "managed by imgfab\n", mode: "0600", owner: "ops:ops"}
      - {path: /etc/app.conf, source: files/app.conf}
      - {path: /etc/empty, content: ""}
    directories:
      - {path: /srv/www, mode: "2775", owner: "1500:www-data"}
      - {path: /var/lib/app}
    users:
      - name: ops
        uid: 1500
        groups: [sudo, adm]
        ssh_authorized_keys: ["` + edKey + `"]
        password_hash: "$y$j9T$abcdefghijklmnop$ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./abcde"
      - {name: svc, uid: 990, gid: 100, shell: /usr/sbin/nologin, home: /var/lib/svc}
    groups:
      - {name: deploy, gid: 2000}
    hostname: web-1.example.com
    timezone: Europe/Berlin
    units:
      enable: [nginx.service, getty@ttyS0.service]
      disable: [apt-daily.timer]
      mask: [systemd-resolved.service]
    partitions:
      - {mount: /var, size: 2GiB}
      - {mount: /data, size: 1GiB, label: data}
      - {size: 512MiB, fs: swap}
      - {size: 64MiB, fs: none, type: linux-generic}
    outputs:
      - {path: "out/{class}-{arch}.qcow2", compress: zstd}
      - {path: "out/{class}-{platform}.img", format: vhd}
    publish:
      - {target: aws, name: "web-{arch}", region: eu-west-1, tpm: true, volume_size: 8}
      - {target: oci, ref: "registry.example/vms/web:{arch}"}
  worker:
    from: docker://registry.example/base/alpine:3
`

func mustParse(t *testing.T, name, src string) *File {
	t.Helper()
	f, err := Parse(name, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseFull(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "imgfab.yaml")
	f := mustParse(t, name, full)
	if got := f.Names(); !reflect.DeepEqual(got, []string{"web", "worker"}) {
		t.Fatalf("classes %v", got)
	}
	web := f.Class("web")
	epoch := int64(1700000000)
	at := func(line, col int) Pos { return Pos{File: name, Line: line, Col: col} }
	want := &Class{
		Name: "web", Pos: at(3, 3), Dir: dir,
		From: "oci:./layout:debian", FromPos: at(4, 11), FromAbs: "oci:" + dir + "/layout:debian",
		Platforms: []Platform{{"linux", "amd64", "", at(5, 17)}, {"linux", "arm64", "v8", at(5, 30)}},
		Layers:    []Layer{{"./overlay", dir + "/overlay", at(6, 14)}, {"/abs/extra.tar", "/abs/extra.tar", at(6, 25)}},
		Kernel:    Kernel{Cmdline: "console=ttyS0 quiet"},
		Boot:      Boot{Mode: "uefi", Table: "gpt", UKI: true, Pos: at(8, 11)},
		Disk:      Disk{Size: 4 << 30, Pos: at(9, 18)},
		ESPSize:   512 << 20, ESPSizePos: at(10, 15),
		SourceDateEpoch: &epoch,
		NoJournal:       true,
		Files: []FileEntry{
			{Path: "/etc/motd", Content: "managed by imgfab\n", Mode: 0o600, Owner: Owner{"ops", "ops"}, Pos: at(14, 9)},
			{Path: "/etc/app.conf", Source: "files/app.conf", SourceAbs: dir + "/files/app.conf", Mode: 0o644, Owner: Owner{"0", "0"}, Pos: at(15, 9)},
			{Path: "/etc/empty", Mode: 0o644, Owner: Owner{"0", "0"}, Pos: at(16, 9)},
		},
		Directories: []Directory{
			{Path: "/srv/www", Mode: 0o2775, Owner: Owner{"1500", "www-data"}, Pos: at(18, 9)},
			{Path: "/var/lib/app", Mode: 0o755, Owner: Owner{"0", "0"}, Pos: at(19, 9)},
		},
		Users: []User{
			{Name: "ops", UID: 1500, GID: 1500, PrimaryGroup: "ops", Groups: []string{"sudo", "adm"}, Shell: "/bin/sh", Home: "/home/ops",
				SSHAuthorizedKeys: []string{edKey}, PasswordHash: "$y$j9T$abcdefghijklmnop$ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./abcde", Pos: at(21, 9)},
			{Name: "svc", UID: 990, GID: 100, Shell: "/usr/sbin/nologin", Home: "/var/lib/svc", PasswordHash: "!", Pos: at(26, 9)},
		},
		Groups:      []Group{{Name: "deploy", GID: 2000, Pos: at(28, 9)}},
		Hostname:    "web-1.example.com",
		Timezone:    "Europe/Berlin",
		TimezonePos: at(30, 15),
		Units: Units{
			Enable:  []Unit{{"nginx.service", at(32, 16)}, {"getty@ttyS0.service", at(32, 31)}},
			Disable: []Unit{{"apt-daily.timer", at(33, 17)}},
			Mask:    []Unit{{"systemd-resolved.service", at(34, 14)}},
		},
		Partitions: []Partition{
			{Mount: "/var", Size: 2 << 30, FS: "ext4", Type: "var", Pos: at(36, 9)},
			{Mount: "/data", Size: 1 << 30, FS: "ext4", Label: "data", Type: "linux-generic", Pos: at(37, 9)},
			{Size: 512 << 20, FS: "swap", Type: "swap", Pos: at(38, 9)},
			{Size: 64 << 20, FS: "none", Type: "linux-generic", Pos: at(39, 9)},
		},
		Outputs: []Output{
			{Path: "out/{class}-{arch}.qcow2", Compress: "zstd", Pos: at(41, 9)},
			{Path: "out/{class}-{platform}.img", Format: "vhd", Pos: at(42, 9)},
		},
		Publish: []Publish{
			{Target: "aws", Params: map[string]string{"name": "web-{arch}", "region": "eu-west-1", "tpm": "true", "volume_size": "8"}, Pos: at(44, 9)},
			{Target: "oci", Params: map[string]string{"ref": "registry.example/vms/web:{arch}"}, Pos: at(45, 9)},
		},
	}
	if !reflect.DeepEqual(web, want) {
		t.Errorf("web:\n got %+v\nwant %+v", *web, *want)
	}
	worker := f.Class("worker")
	if worker.From != "docker://registry.example/base/alpine:3" || worker.FromAbs != worker.From ||
		!reflect.DeepEqual(worker.Platforms, []Platform{{OS: "linux", Arch: "amd64"}}) || worker.Users != nil {
		t.Errorf("worker: %+v", *worker)
	}
	if f.Class("nope") != nil {
		t.Error("Class(nope) is not nil")
	}
	if g := web.Partitions[0].TypeGUID(); g != "4D21B016-B534-45C2-A9FB-5C16E091FD2D" {
		t.Errorf("var GUID %s", g)
	}
}

// TestPartitionTypes: the names spec offers are partition's names for the same GUIDs.
func TestPartitionTypes(t *testing.T) {
	for name, guid := range partitionTypes {
		if got := partition.TypeName(guid); got != name {
			t.Errorf("%s: partition names %s %q", name, guid, got)
		}
	}
}

func TestExpand(t *testing.T) {
	dir := t.TempDir()
	f := mustParse(t, filepath.Join(dir, "x.yaml"), full)
	web := f.Class("web")
	arm, ok := web.Platform("linux/arm64/v8")
	if !ok {
		t.Fatal("no linux/arm64/v8")
	}
	got := web.Expand(arm)
	want := []Output{
		{Path: dir + "/out/web-arm64.qcow2", Format: "qcow2", Compress: "zstd", Pos: web.Outputs[0].Pos},
		{Path: dir + "/out/web-linux-arm64-v8.img", Format: "vhd", Pos: web.Outputs[1].Pos},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Expand:\n got %+v\nwant %+v", got, want)
	}
	pub := web.ExpandPublish(arm)
	if pub[0].Params["name"] != "web-arm64" || pub[1].Params["ref"] != "registry.example/vms/web:arm64" || web.Publish[0].Params["name"] != "web-{arch}" {
		t.Errorf("ExpandPublish: %+v (class: %+v)", pub, web.Publish)
	}
	if _, ok := web.Platform("linux/arm64"); ok {
		t.Error("Platform matched linux/arm64 to linux/arm64/v8")
	}
}

// stripPos zeroes every Pos in v, recursively.
func stripPos(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			stripPos(v.Elem())
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[Pos]() {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				stripPos(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			stripPos(v.Index(i))
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	srcs := map[string]string{"full": full}
	for _, p := range exampleFiles(t) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		srcs[p] = string(b)
	}
	srcs["odd strings"] = `classes:
  x:
    from: "oci:./a b:c"
    hostname: "123"
    files:
      - {path: /etc/a, content: "null"}
      - {path: /etc/b, content: "  leading spaces\n\ttab\ntrailing  \n\n"}
      - {path: /etc/c, content: "0644"}
      - {path: /etc/d, content: "- [x]: {y}\r\n#"}
      - {path: "/etc/e f", content: "true"}
    kernel: {cmdline: "a='b c' \"d\""}
    disk: {size: 1000000000}
    esp_size: 1.5GiB
    outputs: [{path: "-", format: raw}]
    publish: [{target: gcp, name: "x-{arch}", bucket: "123", chunk_size: 32}]
`
	srcs["read-only"] = readOnly
	srcs["read-only defaults"] = "classes:\n  x:\n    from: oci:./l\n    rootfs: ext4\n    verity: false\n"
	for name, src := range srcs {
		t.Run(filepath.Base(name), func(t *testing.T) {
			f := mustParse(t, name, src)
			out := f.YAML()
			g, err := Parse(name, out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			stripPos(reflect.ValueOf(f))
			stripPos(reflect.ValueOf(g))
			if !reflect.DeepEqual(f, g) {
				t.Errorf("round trip differs:\n%s\nfirst  %+v\nsecond %+v", out, f.Classes[0], g.Classes[0])
			}
			if again := g.YAML(); string(again) != string(out) {
				t.Errorf("YAML not stable:\n%s\n---\n%s", out, again)
			}
			m, _ := Marshal(g)
			if string(m) != string(out) {
				t.Error("Marshal differs from YAML")
			}
			for i, c := range f.Classes {
				if string(c.Canonical()) != string(g.Classes[i].Canonical()) {
					t.Errorf("class %s: canonical form differs after the round trip", c.Name)
				}
			}
		})
	}
}

// TestCanonical: the canonical form does not depend on key order, comments, quoting, flow or
// block style, or the spelling of a size or default; it does change with any value.
func TestCanonical(t *testing.T) {
	a := `classes:
  web:
    from: oci:./l:debian
    disk: {size: 4GiB}
    users: [{name: ops, uid: 1500, ssh_authorized_keys: ["` + edKey + `"]}]
    files: [{path: /etc/motd, content: "hi\n"}]
    outputs: [{path: "out/{arch}.qcow2"}]
`
	b := `# the same class, written otherwise
classes:
  web:
    outputs:
      - path: out/{arch}.qcow2   # format from the extension
        format: qcow2
    files:
      - content: |
          hi
        mode: '0644'
        owner: "0:0"
        path: "/etc/motd"
    users:
      - ssh_authorized_keys:
          - ` + edKey + `
        uid: 1500
        name: ops
        shell: /bin/sh
        home: /home/ops
    disk:
      size: 4096MiB
    platforms: [linux/amd64]
    boot: {mode: auto, table: gpt}
    esp_size: 256M
    from: 'oci:./l:debian'
`
	ca := mustParse(t, "a/imgfab.yaml", a).Class("web").Canonical()
	cb := mustParse(t, "elsewhere/b.yaml", b).Class("web").Canonical()
	if string(ca) != string(cb) {
		t.Fatalf("canonical forms differ:\n%s\n%s", ca, cb)
	}
	if string(ca) != string(mustParse(t, "a/imgfab.yaml", a).Class("web").Canonical()) {
		t.Fatal("Canonical is not deterministic")
	}
	for _, change := range [][2]string{
		{"size: 4GiB", "size: 5GiB"},
		{"uid: 1500", "uid: 1501"},
		{`content: "hi\n"`, `content: "hi"`},
		{"{arch}.qcow2", "{arch}.vmdk"},
		{"oci:./l:debian", "oci:./l:debian2"},
		{"files:", "platforms: [linux/arm64]\n    files:"},
	} {
		c := mustParse(t, "a/imgfab.yaml", strings.Replace(a, change[0], change[1], 1)).Class("web").Canonical()
		if string(c) == string(ca) {
			t.Errorf("changing %q to %q kept the canonical form", change[0], change[1])
		}
	}
	t.Logf("id %x", sha256.Sum256(ca))
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"4096", 4096}, {"4096B", 4096}, {"1K", 1 << 10}, {"1KB", 1 << 10}, {"1kib", 1 << 10},
		{"512M", 512 << 20}, {"512MB", 512 << 20}, {"512MiB", 512 << 20}, {"4G", 4 << 30}, {"4gb", 4 << 30},
		{"4GiB", 4 << 30}, {" 4 GiB ", 4 << 30}, {"1.5GiB", 3 << 29}, {"1T", 1 << 40}, {"2TiB", 2 << 40},
		{"1P", 1 << 50}, {"1PiB", 1 << 50}, {"1E", 1 << 60}, {"3EB", 3 << 60}, {"1e3", 1000}, {"0.5K", 512}, {"1_000", 1000},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "GiB", "-1G", "4Gigs", "4 G B", "NaN", "nan", "inf", "4E", "1e30", "4ĠiB", "0x10"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
	for _, n := range []int64{1, 1023, 1 << 10, 3 << 20, 5 << 30, 7 << 40, 1<<30 + 1} {
		if got, err := ParseSize(formatSize(n)); err != nil || got != n {
			t.Errorf("formatSize(%d) = %s reads back as %d, %v", n, formatSize(n), got, err)
		}
	}
}

func TestGoodValues(t *testing.T) {
	base := "classes:\n  c:\n    from: oci:./l\n"
	for _, tc := range []struct{ add, check string }{
		{"    disk: {size: 1000000000}\n", "disk size rounded up to 954MiB"},
		{"    files: [{path: /usr/bin/x, content: x, mode: 4755}]\n", "unquoted octal mode"},
		{"    files: [{path: /x, content: x, mode: 644}]\n", "three digits"},
		{"    users: [{name: _apt, uid: 100, gid: 65534}]\n", "underscore name, existing gid"},
		{"    users: [{name: machine$, uid: 5000, password_hash: \"*\"}]\n", "trailing $, locked"},
		{"    users: [{name: a, uid: 5000, password_hash: \"!$6$salt$hash\"}]\n", "locked hash"},
		{"    timezone: America/Argentina/Buenos_Aires\n", "three-part zone"},
		{"    timezone: Etc/GMT+3\n", "zone with +"},
		{"    hostname: a\n", "one-letter hostname"},
		{"    units: {enable: [serial-getty@ttyS0.service, foo@.service, a\\x2db.mount]}\n", "templates and escapes"},
		{"    from: registry.example:5000/a/b@sha256:" + strings.Repeat("a", 64) + "\n", "digest reference"},
		{"    partitions: [{mount: /var/tmp, size: 1G}]\n", "var-tmp"},
		{"    outputs: [{path: out/x.raw.zst}, {path: out/y.qcow2, compress: deflate}, {path: out/z.raw, compress: xz}]\n", "compressions"},
		{"    publish: [{target: azure, name: w, resource_group: rg, storage_account: sa, hyperv_generation: V2}]\n", "azure"},
		{"    platforms: [linux/amd64/v3]\n", "amd64 variant"},
		{"    boot: {mode: hybrid, table: mbr}\n", "hybrid mbr"},
		{"    boot: {chain: shim}\n", "shim"},
		{"    source_date_epoch: 0\n", "epoch 0"},
		{"    layers: &l [./a]\n    kernel: {cmdline: x}\n", "an anchor"},
		{"    rootfs: erofs\n", "erofs without verity"},
		{"    rootfs: erofs\n    verity: true\n    partitions: [{mount: /srv, size: 1G}, {mount: /var/lib/db, size: 1G}]\n", "erofs with partitions other than /var"},
		{"    boot: {uki: true, mode: uefi}\n    secure_boot: {key: k.pem, cert: c.pem}\n", "signed ext4 root"},
		{"    boot: {uki: true}\n    rootfs: erofs\n    verity: true\n    secure_boot: {key: /k, cert: /c, enroll: /keys}\n    platforms: [linux/arm64]\n", "arm64"},
	} {
		src := strings.Replace(base, "    from: oci:./l\n", "", 1*boolInt(strings.HasPrefix(tc.add, "    from:")))
		if _, err := Parse("good.yaml", []byte(src+tc.add)); err != nil {
			t.Errorf("%s: %v", tc.check, err)
		}
	}
	f := mustParse(t, "g.yaml", base+"    disk: {size: 1000000000}\n    files: [{path: /x, content: x, mode: 644}]\n")
	if c := f.Classes[0]; c.Disk.Size != 954<<20 || c.Files[0].Mode != 0o644 {
		t.Errorf("size %d, mode %o", c.Disk.Size, c.Files[0].Mode)
	}
	f = mustParse(t, "g.yaml", "x: &from oci:./l\n"[:0]+"classes:\n  a: &a {from: oci:./l, hostname: h}\n  b: *a\n")
	if f.Class("b").Hostname != "h" {
		t.Error("alias not followed")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLimits(t *testing.T) {
	big := "classes:\n  a: {from: oci:./l}\n#" + strings.Repeat("x", MaxFileSize) + "\n"
	if _, err := Parse("big.yaml", []byte(big)); err == nil || !strings.Contains(err.Error(), "big.yaml:1:1: the file has more than 1048576 bytes") {
		t.Errorf("big file: %v", err)
	}
	var many strings.Builder
	many.WriteString("classes:\n")
	for i := range MaxClasses + 1 {
		fmt.Fprintf(&many, "  c%d: {from: oci:./l}\n", i)
	}
	if _, err := Parse("many.yaml", []byte(many.String())); err == nil || !strings.Contains(err.Error(), "257 classes, more than the 256 allowed") {
		t.Errorf("many classes: %v", err)
	}
	deep := "classes:\n  a: {from: oci:./l, layers: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}\n"
	if _, err := Parse("deep.yaml", []byte(deep)); err == nil || !strings.Contains(err.Error(), "nested more than 64 levels") {
		t.Errorf("deep: %v", err)
	}
	// Aliases multiply: one 4000-item list named by 100 classes is 400000 values.
	var bomb strings.Builder
	bomb.WriteString("classes:\n  c0: {from: oci:./l, layers: &l [" + strings.Repeat("a, ", 3999) + "a]}\n")
	for i := 1; i < 100; i++ {
		fmt.Fprintf(&bomb, "  c%d: {from: oci:./l, layers: *l}\n", i)
	}
	_, err := Parse("bomb.yaml", []byte(bomb.String()))
	var e *Error
	if !errors.As(err, &e) || e.Pos.Line == 0 || !strings.Contains(e.Msg, "more than 262144 values with aliases expanded") {
		t.Errorf("alias bomb: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "imgfab.yaml")
	if err := os.WriteFile(p, []byte("classes:\n  a:\n    from: oci:layout\n    hostname: -x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":4:15: classes.a.hostname: ") {
		t.Errorf("Load: %v", err)
	}
	os.WriteFile(p, []byte("classes:\n  a:\n    from: oci:layout\n"), 0o644)
	f, err := Load(p)
	if err != nil || f.Dir != dir || f.Class("a").FromAbs != "oci:"+dir+"/layout" {
		t.Errorf("Load: %v %+v", err, f)
	}
	if _, err := Load(dir); err == nil {
		t.Error("Load of a directory")
	}
}

func TestErrorf(t *testing.T) {
	f := mustParse(t, "x.yaml", "classes:\n  a:\n    from: oci:./l\n    units: {enable: [nope.service]}\n")
	u := f.Class("a").Units.Enable[0]
	err := Errorf(u.Pos, "classes.a.units.enable[0]", "%s is not in the image", u.Name)
	if err.Error() != "x.yaml:4:22: classes.a.units.enable[0]: nope.service is not in the image" {
		t.Error(err)
	}
}

// TestBounds: the bounds spec checks are the ones the build enforces. (assemble's MaxDiskSize,
// DefaultESPSize and MaxEpoch are not imported here: assemble may come to import spec.)
func TestBounds(t *testing.T) {
	if MinESPSize != bootloader.MinESPSize || MaxESPSize != bootloader.MaxESPSize {
		t.Errorf("ESP bounds %d..%d, bootloader has %d..%d", MinESPSize, MaxESPSize, bootloader.MinESPSize, bootloader.MaxESPSize)
	}
}
