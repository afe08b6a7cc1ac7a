package main

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/imgfab/imgfab/check"
	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/publish/aws/awstest"
	"github.com/imgfab/imgfab/publish/azure/azuretest"
	"github.com/imgfab/imgfab/publish/oci/ocitest"
)

// nonPassSet is a check's non-pass results: rule id → status.
type nonPassSet map[string]check.Status

// checkWant is the non-pass results of every target over one disk.
type checkWant map[string]nonPassSet

func (w checkWant) clone() checkWant {
	c := checkWant{}
	for k, v := range w {
		c[k] = maps.Clone(v)
	}
	return c
}

// set gives id the status s on the targets named (every target the rule applies to when none are);
// Pass removes it.
func (w checkWant) set(id string, s check.Status, targets ...string) checkWant {
	if len(targets) == 0 {
		for _, r := range check.Rules() {
			if r.ID == id {
				targets = r.Targets
			}
		}
	}
	for _, t := range targets {
		if w[t] == nil {
			w[t] = nonPassSet{}
		}
		if s == check.Pass {
			delete(w[t], id)
		} else {
			w[t][id] = s
		}
	}
	return w
}

// baseWant is what the Debian cloud fixture built for the cloud (--cmdline console=ttyS0) gets as
// qcow2: every target passes but arm64 (an x86 disk), the container rules of gcp and azure (not
// their format: skip) and the formats vmware and metal take.
func baseWant() checkWant {
	return checkWant{
		"aws-arm64": {"boot.arch": check.Fail},
		"gcp":       {"gcp.tarball": check.Skip},
		"azure":     {"azure.vhd": check.Skip},
		"vmware":    {"format": check.Warn},
		"metal":     {"format": check.Warn},
	}
}

// assertCheck reads disk once and checks it for every target against want.
func assertCheck(t *testing.T, disk string, want checkWant) {
	t.Helper()
	f, err := gatherDisk(context.Background(), disk)
	if err != nil {
		t.Fatalf("%s: %v", disk, err)
	}
	for _, target := range check.Targets() {
		rep, err := check.Check(context.Background(), f, target)
		if err != nil {
			t.Fatal(err)
		}
		got := nonPassSet{}
		for _, r := range rep.Rules {
			if r.Status != check.Pass {
				got[r.ID] = r.Status
			}
		}
		w := want[target]
		if w == nil {
			w = nonPassSet{}
		}
		if !maps.Equal(got, w) {
			var lines []string
			for _, r := range rep.Rules {
				if r.Status != check.Pass || w[r.ID] != "" {
					lines = append(lines, fmt.Sprintf("    %s %s: %s", r.Status, r.ID, r.Message))
				}
			}
			t.Errorf("%s for %s: non-pass %v, want %v\n%s", filepath.Base(disk), target, got, w, strings.Join(lines, "\n"))
		}
	}
}

// debianCloud is the Debian 12 cloud fixture (cloud-init, openssh-server, growpart).
func debianCloud(t *testing.T) string {
	return "oci:" + fixture(t, "debian-cloud/oci", "mkdebian-cloud.sh") + ":debian"
}

// fixtureInitrd returns the fixture's initrd and kernel version (its root tree's
// boot/initrd.img-VERSION).
func fixtureInitrd(t *testing.T) (string, string) {
	root := fixture(t, "debian-cloud/root", "mkdebian-cloud.sh")
	m, _ := filepath.Glob(filepath.Join(root, "boot", "initrd.img-*"))
	if len(m) != 1 {
		t.Fatalf("want one initrd in %s/boot, got %q", root, m)
	}
	return m[0], strings.TrimPrefix(filepath.Base(m[0]), "initrd.img-")
}

// remakeInitrd unpacks the fixture's (gzip'd newc) initrd with GNU cpio, lets change edit the
// tree, packs it again with cpio -H newc and gzip, and returns a --layer directory that puts it at
// /boot/initrd.img-VERSION.
func remakeInitrd(t *testing.T, change func(tree, ver string)) string {
	cpio, gz := testtool.Need(t, "cpio", "cpio"), testtool.Need(t, "gzip", "gzip")
	src, ver := fixtureInitrd(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	sh := func(dir, script string, args ...string) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{"-ec", script, "sh"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh(tree, `"$1" -dc "$2" | "$3" -idm --quiet --no-absolute-filenames`, gz, src, cpio)
	change(tree, ver)
	layer := filepath.Join(dir, "layer")
	if err := os.MkdirAll(filepath.Join(layer, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh(tree, `find . -mindepth 1 | LC_ALL=C sort | "$1" -o -H newc --quiet | "$2" -1n > "$3"`, cpio, gz, filepath.Join(layer, "boot", "initrd.img-"+ver))
	return layer
}

// layerDir writes files (path → content; "" content with a .wh. name is a whiteout) into a new
// --layer directory.
func layerDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeGCETarball writes disk.raw (raw's bytes, padded with zeros to pad bytes when pad is larger)
// into a gzip'd tar by hand (archive/tar, klauspost gzip): GCE's import format, of any size.
func writeGCETarball(t *testing.T, raw, out string, size int64) {
	in, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "disk.raw", Mode: 0o644, Size: size, Typeflag: tar.TypeReg, Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(tw, io.LimitReader(in, size))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(tw, io.LimitReader(zeroReader{}, size-n)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeFixedVHD makes a fixed VHD of virtual size size from raw: the raw bytes (a sparse copy),
// zeros to size, then a footer (Microsoft "Virtual Hard Disk Image Format Specification",
// "Hard Disk Footer Format": cookie 0, features 8, version 12, data offset 16, timestamp 24,
// creator application 28, creator version 32, creator host OS 36, original size 40, current size
// 48, geometry 56, disk type 60, checksum 64 (one's complement of the byte sum), unique id 68).
func writeFixedVHD(t *testing.T, raw, out string, size int64) {
	cp := exec.Command("cp", "--sparse=always", raw, out)
	if b, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, b)
	}
	if err := os.Truncate(out, size); err != nil {
		t.Fatal(err)
	}
	var ft [512]byte
	be := binary.BigEndian
	copy(ft[0:], "conectix")
	be.PutUint32(ft[8:], 2)
	be.PutUint32(ft[12:], 0x00010000)
	be.PutUint64(ft[16:], ^uint64(0))
	copy(ft[28:], "test")
	copy(ft[36:], "Wi2k")
	be.PutUint64(ft[40:], uint64(size))
	be.PutUint64(ft[48:], uint64(size))
	be.PutUint32(ft[56:], 0xFFFF10FF) // 65535 cylinders, 16 heads, 255 sectors: the largest CHS
	be.PutUint32(ft[60:], 2)          // fixed
	copy(ft[68:], "imgfab-check-vhd")
	var sum uint32
	for _, c := range ft {
		sum += uint32(c)
	}
	be.PutUint32(ft[64:], ^sum)
	f, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(ft[:], size); err != nil {
		t.Fatal(err)
	}
}

// TestCheckDebianCloud: the Debian cloud fixture built for the cloud passes every target it fits
// (in qcow2, raw, fixed VHD and a GCE tarball), and variants built to break one rule each fire
// that rule, on the targets it concerns, and nothing else: the full set of non-pass rules is
// asserted for each of the 8 targets over each disk. Each variant is built once, in parallel.
func TestCheckDebianCloud(t *testing.T) {
	src := debianCloud(t)
	sem := make(chan struct{}, 4) // builds at once
	buildVariant := func(t *testing.T, dir, name string, args ...string) string {
		t.Helper()
		sem <- struct{}{}
		defer func() { <-sem }()
		out := filepath.Join(dir, name+".qcow2")
		build(t, append([]string{src, "-o", out}, args...)...)
		return out
	}
	gib := int64(1) << 30

	variants := []struct {
		name string
		args func(t *testing.T, dir string) []string
		want func(w checkWant) checkWant
		more func(t *testing.T, dir, qcow2 string) // more disks made from this build, with their own checks
	}{
		{name: "base", args: func(_ *testing.T, dir string) []string {
			return []string{"--cmdline", "console=ttyS0", "-o", filepath.Join(dir, "base.raw"), "-o", filepath.Join(dir, "base.vhd")}
		}, want: func(w checkWant) checkWant { return w }, more: func(t *testing.T, dir, _ string) {
			raw := filepath.Join(dir, "base.raw")
			fi, err := os.Stat(raw)
			if err != nil {
				t.Fatal(err)
			}
			size := fi.Size()
			assertCheck(t, raw, baseWant().set("format", check.Pass, "metal"))
			vhdWant := baseWant().set("azure.vhd", check.Pass, "azure").set("format", check.Warn, "kubevirt")
			assertCheck(t, filepath.Join(dir, "base.vhd"), vhdWant)
			// GCE tarballs written by hand: disk.raw of whole GiB, and one of the raw's size.
			gceWant := baseWant().set("gcp.tarball", check.Pass, "gcp").set("format", check.Warn, "kubevirt", "openstack")
			whole, off := filepath.Join(dir, "whole.tar.gz"), filepath.Join(dir, "off.tar.gz")
			if size%gib == 0 {
				t.Fatalf("the raw disk is a whole %d GiB: the off-size tarball would not be", size/gib)
			}
			writeGCETarball(t, raw, whole, (size+gib-1)/gib*gib)
			writeGCETarball(t, raw, off, size)
			assertCheck(t, whole, gceWant)
			assertCheck(t, off, gceWant.clone().set("gcp.tarball", check.Fail, "gcp"))
			// A fixed VHD whose virtual size is 3 sectors past a whole MiB, and a dynamic one.
			offVHD := filepath.Join(dir, "off.vhd")
			writeFixedVHD(t, raw, offVHD, size+1536)
			assertCheck(t, offVHD, vhdWant.clone().set("azure.vhd", check.Fail, "azure"))
			dyn := filepath.Join(dir, "dyn.vhd")
			if r := runImgfab(t, nil, "convert", "--format", "vhd-dynamic", raw, dyn); r.code != 0 {
				t.Fatalf("convert: %s", r.stderr)
			}
			assertCheck(t, dyn, vhdWant.clone().set("azure.vhd", check.Fail, "azure"))
			// The qcow2 enlarged to 70 TiB (qemu-img resize): more than EBS and Azure take.
			big := filepath.Join(dir, "base-70t.qcow2")
			resize(t, filepath.Join(dir, "base.qcow2"), big, "70T")
			assertCheck(t, big, baseWant().set("size.limit", check.Fail, "aws", "aws-arm64", "azure"))
		}},
		{name: "no-console", args: func(*testing.T, string) []string { return nil }, want: func(w checkWant) checkWant {
			return w.set("cmdline.console", check.Fail, "aws", "aws-arm64", "gcp", "azure").set("cmdline.console", check.Warn, "kubevirt", "openstack")
		}},
		{name: "bios-mbr", args: func(*testing.T, string) []string {
			return []string{"--cmdline", "console=ttyS0", "--boot", "bios", "--table", "mbr"}
		}, want: func(w checkWant) checkWant { return w.set("boot.firmware", check.Fail, "aws-arm64") }, more: func(t *testing.T, dir, qcow2 string) {
			// The same MBR disk enlarged to 3 TiB (qemu-img resize): past what MBR addresses.
			big := filepath.Join(dir, "bios-3t.qcow2")
			resize(t, qcow2, big, "3T")
			assertCheck(t, big, baseWant().set("boot.firmware", check.Fail, "aws-arm64").set("size.limit", check.Fail))
		}},
		{name: "uki", args: func(*testing.T, string) []string { return []string{"--cmdline", "console=ttyS0", "--uki"} }, want: func(w checkWant) checkWant { return w }},
		{name: "uki-no-console", args: func(*testing.T, string) []string { return []string{"--uki"} }, want: func(w checkWant) checkWant { // the UKI's .cmdline
			return w.set("cmdline.console", check.Fail, "aws", "aws-arm64", "gcp", "azure").set("cmdline.console", check.Warn, "kubevirt", "openstack")
		}},
		{name: "no-nvme", args: func(t *testing.T, _ string) []string {
			return []string{"--cmdline", "console=ttyS0", "--layer", remakeInitrd(t, func(tree, ver string) {
				ko, _ := filepath.Glob(filepath.Join(tree, "usr/lib/modules", ver, "kernel/drivers/nvme/host/nvme.ko*"))
				if len(ko) != 1 {
					t.Fatalf("nvme.ko in the fixture's initrd: %q", ko)
				}
				if err := os.Remove(ko[0]); err != nil {
					t.Fatal(err)
				}
			})}
		}, want: func(w checkWant) checkWant { return w.set("drivers.storage", check.Fail, "aws", "aws-arm64", "gcp") }},
		{name: "initrd-for-another-kernel", args: func(t *testing.T, _ string) []string {
			return []string{"--cmdline", "console=ttyS0", "--layer", remakeInitrd(t, func(tree, ver string) {
				d := filepath.Join(tree, "usr/lib/modules")
				if err := os.Rename(filepath.Join(d, ver), filepath.Join(d, "6.0.0-0-amd64")); err != nil {
					t.Fatal(err)
				}
			})}
		}, want: func(w checkWant) checkWant { return w.set("initrd.kernel", check.Fail) }},
		{name: "root-by-kernel-name", args: func(*testing.T, string) []string { return []string{"--cmdline", "console=ttyS0 root=/dev/sda2"} }, want: func(w checkWant) checkWant {
			return w.set("cmdline.root", check.Fail).set("cmdline.root", check.Warn, "metal")
		}},
		{name: "no-cloud-init", args: func(t *testing.T, _ string) []string {
			return []string{"--cmdline", "console=ttyS0", "--layer", layerDir(t, map[string]string{"usr/bin/.wh.cloud-init": ""})}
		}, want: func(w checkWant) checkWant {
			return w.set("agent.metadata", check.Fail, "aws", "aws-arm64", "gcp", "azure", "openstack").set("agent.metadata", check.Warn, "kubevirt", "vmware").
				set("agent.datasource", check.Skip).set("network.config", check.Warn)
		}},
		{name: "no-vmxnet3", args: func(t *testing.T, _ string) []string {
			// Neither in the initrd nor on the root filesystem (the module, and its modules.dep line).
			_, ver := fixtureInitrd(t)
			dep, err := os.ReadFile(filepath.Join(fixture(t, "debian-cloud/root", "mkdebian-cloud.sh"), "usr/lib/modules", ver, "modules.dep"))
			if err != nil {
				t.Fatal(err)
			}
			var keep []string
			for _, l := range strings.SplitAfter(string(dep), "\n") {
				if !strings.Contains(l, "vmxnet3") {
					keep = append(keep, l)
				}
			}
			initrd := remakeInitrd(t, func(tree, ver string) {
				ko, _ := filepath.Glob(filepath.Join(tree, "usr/lib/modules", ver, "kernel/drivers/net/vmxnet3/vmxnet3.ko*"))
				if len(ko) != 1 {
					t.Fatalf("vmxnet3.ko in the fixture's initrd: %q", ko)
				}
				if err := os.Remove(ko[0]); err != nil {
					t.Fatal(err)
				}
			})
			mods := "usr/lib/modules/" + ver + "/"
			root := layerDir(t, map[string]string{mods + "modules.dep": strings.Join(keep, ""), mods + "kernel/drivers/net/vmxnet3/.wh.vmxnet3.ko": ""})
			return []string{"--cmdline", "console=ttyS0", "--layer", initrd, "--layer", root}
		}, want: func(w checkWant) checkWant { return w.set("drivers.network", check.Fail, "vmware") }},
		{name: "no-host-key-maker", args: func(t *testing.T, _ string) []string {
			// sshd, its keys removed by the layer, and neither cloud-init nor imgfab's unit to make new ones.
			files := map[string]string{"usr/bin/.wh.cloud-init": ""}
			for _, k := range []string{"ecdsa", "ed25519", "rsa"} {
				files["etc/ssh/.wh.ssh_host_"+k+"_key"], files["etc/ssh/.wh.ssh_host_"+k+"_key.pub"] = "", ""
			}
			return []string{"--cmdline", "console=ttyS0", "--keep", "ssh-hostkeys", "--layer", layerDir(t, files)}
		}, want: func(w checkWant) checkWant {
			return w.set("identity.ssh-keygen", check.Fail).
				set("agent.metadata", check.Fail, "aws", "aws-arm64", "gcp", "azure", "openstack").set("agent.metadata", check.Warn, "kubevirt", "vmware").
				set("agent.datasource", check.Skip).set("network.config", check.Warn)
		}},
		{name: "datasource-nocloud", args: func(t *testing.T, _ string) []string {
			return []string{"--cmdline", "console=ttyS0", "--layer", layerDir(t, map[string]string{"etc/cloud/cloud.cfg.d/99-nocloud.cfg": "datasource_list: [ NoCloud, None ]\n"})}
		}, want: func(w checkWant) checkWant {
			return w.set("agent.datasource", check.Fail, "aws", "aws-arm64", "gcp", "azure", "openstack").set("agent.datasource", check.Warn, "vmware")
		}},
		{name: "no-grow", args: func(t *testing.T, _ string) []string {
			return []string{"--cmdline", "console=ttyS0", "--no-grow", "--layer", layerDir(t, map[string]string{"usr/bin/.wh.growpart": ""})}
		}, want: func(w checkWant) checkWant { return w.set("grow.root", check.Warn) }},
		{name: "baked-machine-id", args: func(*testing.T, string) []string {
			return []string{"--cmdline", "console=ttyS0", "--keep", "machine-id"}
		}, want: func(w checkWant) checkWant {
			return w.set("identity.machine-id", check.Fail)
		}},
		{name: "leftover-host-keys", args: func(*testing.T, string) []string {
			return []string{"--cmdline", "console=ttyS0", "--keep", "ssh-hostkeys"}
		}, want: func(w checkWant) checkWant {
			return w.set("identity.ssh-host-keys", check.Fail)
		}},
		{name: "leftover-secrets", args: func(t *testing.T, _ string) []string {
			return []string{"--cmdline", "console=ttyS0", "--keep", "machine-id,random-seed,credentials", "--layer", layerDir(t, map[string]string{
				"etc/machine-id":                    "uninitialized\n",
				"var/lib/dbus/machine-id":           "6389fdf6082b4fc0ac2bb5f9ac0d125c\n",
				"var/lib/systemd/random-seed":       "0123456789abcdef",
				"var/lib/systemd/credential.secret": "0123456789abcdef0123456789abcdef",
			})}
		}, want: func(w checkWant) checkWant {
			return w.set("identity.dbus-machine-id", check.Fail).set("identity.random-seed", check.Warn).set("identity.credential-secret", check.Fail)
		}},
		{name: "unconfigured-fstab", args: func(*testing.T, string) []string { return []string{"--cmdline", "console=ttyS0", "--keep", "fstab"} }, want: func(w checkWant) checkWant {
			return w.set("fstab.root", check.Warn).set("fstab.esp", check.Warn)
		}},
		{name: "fstab-foreign-disk", args: func(t *testing.T, _ string) []string {
			return []string{"--cmdline", "console=ttyS0", "--layer", layerDir(t, map[string]string{"etc/fstab": "UUID=0e1f2a3b-0000-4000-8000-000000000000 /data ext4 defaults 0 2\n"})}
		}, want: func(w checkWant) checkWant { return w.set("fstab.devices", check.Fail) }},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			// Each variant's disks are removed when it is checked: nineteen Debian disks at once
			// would need tens of GB.
			dir := t.TempDir()
			disk := buildVariant(t, dir, v.name, v.args(t, dir)...)
			assertCheck(t, disk, v.want(baseWant()))
			if v.more != nil {
				v.more(t, dir, disk)
			}
		})
	}
}

// resize copies a qcow2 and enlarges the copy's virtual size with qemu-img resize (only the
// header changes: the partition table still describes the small disk).
func resize(t *testing.T, src, dst, size string) {
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if out, err := exec.Command(qemuImg, "resize", "-q", "-f", "qcow2", dst, size).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img resize: %v %s", err, out)
	}
}

// TestCheckCLI: imgfab check prints every rule, exits 0 with warnings only and 1 on a failing
// rule, prints the documented JSON shape, and refuses bad usage with 2.
func TestCheckCLI(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "demo.qcow2")
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "--cmdline", "console=ttyS0", "-o", disk)
	r := runImgfab(t, nil, "check", disk, "--target", "aws")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  drivers.storage") || !strings.Contains(r.stdout, "source: https://docs.aws.amazon.com/") ||
		!strings.Contains(r.stderr, "rules fail for aws") {
		t.Errorf("check demo for aws: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runImgfab(t, nil, "check", "--json", "-t", "kubevirt", disk)
	var rep check.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 1 {
		t.Fatalf("--json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if rep.Target != "kubevirt" || rep.Disk != disk || rep.Summary.Fail != 1 || len(rep.Rules) != rep.Summary.Pass+rep.Summary.Fail+rep.Summary.Warn+rep.Summary.Skip {
		t.Errorf("report %+v", rep)
	}
	for _, c := range [][]string{{"check", disk}, {"check", disk, "--target", "ec2"}, {"check", "--target", "aws"}, {"check", disk, disk, "--target", "aws"}} {
		if r := runImgfab(t, nil, c...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", c, r.code, r.stderr)
		}
	}
	if r := runImgfab(t, nil, "check", filepath.Join(t.TempDir(), "none.qcow2"), "--target", "aws"); r.code != 1 {
		t.Errorf("missing disk: exit %d, want 1", r.code)
	}
	if r := runImgfab(t, nil, "check", "--help"); r.code != 0 || !strings.Contains(r.stdout, "aws-arm64") {
		t.Errorf("--help: exit %d\n%s", r.code, r.stdout)
	}
}

// countingProxy forwards to target and counts the requests it sees.
func countingProxy(t *testing.T, target string) (string, *atomic.Int64) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path, &n
}

// pushRefusal runs a push of a disk that fails its check: exit 1, the failing rules on stderr,
// nothing sent (count stays 0); then the same push with --no-check reaches the server.
func pushRefusal(t *testing.T, env []string, count func() int64, wantRule string, args ...string) {
	t.Helper()
	r := runImgfab(t, env, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "FAIL "+wantRule+":") || !strings.Contains(r.stderr, "nothing was sent") ||
		!strings.Contains(r.stderr, "--no-check") || strings.Contains(r.stderr, "uploading") {
		t.Errorf("%v: exit %d, want 1 naming %s\n%s", args, r.code, wantRule, r.stderr)
	}
	if n := count(); n != 0 {
		t.Errorf("%v: %d requests reached the server, want none", args, n)
	}
	r = runImgfab(t, env, append(args, "--no-check")...)
	if r.code != 0 || count() == 0 {
		t.Errorf("%v --no-check: exit %d, %d requests\n%s", args, r.code, count(), r.stderr)
	}
}

// demoDisk builds the demo image (no cloud-init, no cloud drivers in its initrd: it fails every
// cloud's check) in the format of name's extension.
func demoDisk(t *testing.T, name string) string {
	disk := filepath.Join(t.TempDir(), name)
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "--cmdline", "console=ttyS0", "-o", disk)
	return disk
}

func TestCheckRefusesPushAWS(t *testing.T) {
	disk := demoDisk(t, "demo.qcow2")
	f := awstest.New(t)
	ep, n := countingProxy(t, f.URL)
	env := append(f.Env(), "IMGFAB_AWS_ENDPOINT_EBS="+ep, "IMGFAB_AWS_ENDPOINT_EC2="+ep)
	pushRefusal(t, env, n.Load, "drivers.storage", "push", "aws", disk, "--name", "refused", "--poll-interval", "1ms")
	if f.Images() != 1 {
		t.Errorf("%d AMIs after the --no-check push, want 1", f.Images())
	}
}

func TestCheckRefusesPushGCP(t *testing.T) {
	disk := demoDisk(t, "demo.qcow2")
	gcs, cs, env, _ := gcpServers(t)
	sep, sn := countingProxy(t, gcs.URL+"/storage/v1/")
	cep, cn := countingProxy(t, cs.URL+"/compute/v1/")
	env = append(env, "IMGFAB_GCP_ENDPOINT_STORAGE="+sep, "IMGFAB_GCP_ENDPOINT_COMPUTE="+cep)
	pushRefusal(t, env, func() int64 { return sn.Load() + cn.Load() }, "agent.metadata", "push", "gcp", disk, "--bucket", "bkt", "--name", "refused", "--poll-interval", "1ms")
}

func TestCheckRefusesPushAzure(t *testing.T) {
	disk := demoDisk(t, "demo.vhd")
	ep, n := countingProxy(t, azuretest.Start(t))
	env := []string{"AZURE_STORAGE_KEY=" + azuretest.Key}
	pushRefusal(t, env, n.Load, "drivers.storage", "push", "azure", disk, "--upload-only", "--storage-account", azuretest.Account,
		"--name", "refused", "--blob-endpoint", ep)
}

func TestCheckRefusesPushOCI(t *testing.T) {
	disk := demoDisk(t, "demo.qcow2")
	var n atomic.Int64
	reg := ocitest.Registry()
	host := strings.TrimPrefix(ocitest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		reg.ServeHTTP(w, r)
	})), "http://")
	pushRefusal(t, nil, n.Load, "drivers.network", "push", "oci", "--insecure", disk, host+"/vms/refused:1")
}

// TestCheckDocs: docs/CHECK.md lists every rule with its targets and every source the rules cite.
func TestCheckDocs(t *testing.T) {
	b, err := os.ReadFile("../../docs/CHECK.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, r := range check.Rules() {
		if !strings.Contains(doc, "`"+r.ID+"`") {
			t.Errorf("docs/CHECK.md does not list %s", r.ID)
		}
		srcs := slices.Sorted(maps.Values(r.Sources))
		for _, s := range slices.Compact(srcs) {
			if !strings.Contains(doc, s) {
				t.Errorf("docs/CHECK.md: %s does not cite %s", r.ID, s)
			}
		}
	}
}
