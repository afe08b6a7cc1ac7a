package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testtool"
)

// TestFirstBootCattle (issue 13): the Debian 12 cloud fixture (testdata/mkdebian-cloud.sh: cloud-init,
// openssh-server, growpart, and what debootstrap and the package scripts left: the build host's
// hostname, a machine-id, SSH host keys, an unconfigured fstab), plus testdata/firstboot-check
// (a unit that prints what the booted system sees), built at its default size as GPT/UEFI and as
// MBR/BIOS. Each disk is enlarged to 4 GiB (a qcow2 overlay, as `qemu-img resize` would) and booted
// twice: first from NVMe (as on AWS Nitro), then from virtio-scsi (as on GCE). A second instance
// of the UEFI image boots beside the first. Checked on the serial console:
//   - the root partition reaches the end of the disk and its filesystem grew with it, on the first
//     boot, and stays so on the second;
//   - the first boot is systemd's first boot (a ConditionFirstBoot= unit runs), the second is not;
//   - the machine-id is set on the first boot, kept on the second, and differs between instances;
//     so do the SSH host keys (made on the first boot by the image's ssh-keygen; sshd runs);
//   - the ESP is mounted at /boot/efi from /etc/fstab, `findmnt --verify` is clean, no unit
//     failed, and the hostname is not the build host's.
func TestFirstBootCattle(t *testing.T) {
	if os.Getenv("IMGFAB_SLOW") == "" {
		t.Skip("slow acceptance test (five Debian boots): IMGFAB_SLOW=1 or make test-slow")
	}
	src := fixture(t, "debian-cloud/oci", "mkdebian-cloud.sh")
	layer, err := filepath.Abs(filepath.Join("..", "..", "testdata", "firstboot-check"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, firmware string
		args           []string
		twoInstances   bool
	}{
		{"uefi-gpt", "uefi", nil, true},
		{"bios-mbr", "bios", []string{"--boot", "bios", "--table", "mbr"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := filepath.Join(dir, "disk.qcow2")
			res := build(t, append([]string{"oci:" + src + ":debian", "--layer", layer, "--cmdline", "console=ttyS0", "-o", img}, c.args...)...)
			var root assemble.PartitionResult
			for _, p := range res.Partitions {
				if strings.HasPrefix(p.Name, "root-") {
					root = p
				}
			}
			if c.firmware == "bios" && res.Boot.Table != "mbr" {
				t.Fatalf("table %q, want mbr", res.Boot.Table)
			}
			var first, second, other map[string][]string
			t.Run("instances", func(t *testing.T) {
				t.Run("1", func(t *testing.T) {
					t.Parallel()
					disk := enlarged(t, img, filepath.Join(dir, "i1.qcow2"))
					first = bootReport(t, vm{firmware: c.firmware, disk: disk, format: "qcow2", bus: "nvme", persist: true, timeout: 10 * time.Minute})
					second = bootReport(t, vm{firmware: c.firmware, disk: disk, format: "qcow2", bus: "scsi", persist: true, timeout: 10 * time.Minute})
				})
				if c.twoInstances {
					t.Run("2", func(t *testing.T) {
						t.Parallel()
						disk := enlarged(t, img, filepath.Join(dir, "i2.qcow2"))
						other = bootReport(t, vm{firmware: c.firmware, disk: disk, format: "qcow2", persist: true, timeout: 10 * time.Minute})
					})
				}
			})
			if first == nil || second == nil || c.twoInstances && other == nil {
				t.Fatal("a boot did not report")
			}
			for i, r := range []map[string][]string{first, second} {
				checkGrown(t, r, root.Offset, root.Size)
				checkSettled(t, r)
				if ran := len(r["FIRSTBOOT-RAN"]) > 0; ran != (i == 0) {
					t.Errorf("boot %d: ConditionFirstBoot unit ran: %v, want %v", i+1, ran, i == 0)
				}
			}
			if a, b := one(first, "MACHINE-ID"), one(second, "MACHINE-ID"); len(a) != 32 || a != b {
				t.Errorf("machine-id %q on the first boot, %q on the second: want one 32-hex id kept", a, b)
			}
			if a, b := strings.Join(first["SSH-HOSTKEY"], ","), strings.Join(second["SSH-HOSTKEY"], ","); len(first["SSH-HOSTKEY"]) < 2 || a != b {
				t.Errorf("SSH host keys %q then %q: want keys made on the first boot and kept", a, b)
			}
			if c.twoInstances {
				checkSettled(t, other)
				if a, b := one(first, "MACHINE-ID"), one(other, "MACHINE-ID"); a == b || len(b) != 32 {
					t.Errorf("two instances of one image: machine-ids %q and %q", a, b)
				}
				for _, k := range first["SSH-HOSTKEY"] {
					for _, o := range other["SSH-HOSTKEY"] {
						if k == o {
							t.Errorf("two instances of one image share the SSH host key %s", k)
						}
					}
				}
			}
		})
	}
}

// enlarged is a qcow2 overlay of img with a 4 GiB virtual size: the image on a larger disk.
func enlarged(t *testing.T, img, path string) string {
	t.Helper()
	qemuImg := testtool.Need(t, "qemu-img", "qemu-utils")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img, path, "4G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	return path
}

// reportField is one IMGFAB-KEY=value field of the report on the serial console. The console is
// shared with the kernel and journald, whose lines can run into ours without a newline between
// ("IMGFAB-SSHD=active[   39.19] imgfab-report[290]: IMGFAB-ESP=…", seen in CI): a value ends at
// the line's end or where a console timestamp "[   12.345678]" begins.
var reportField = regexp.MustCompile(`IMGFAB-([A-Z0-9-]+)(?:=(.*?))?(?:\[\s*\d+\.\d+\]|\r|$)`)

// bootReport boots m until it powers off and returns testdata/firstboot-check's report: each
// IMGFAB-KEY=value field's values by KEY (IMGFAB-FIRSTBOOT-RAN as a key with an empty value).
func bootReport(t *testing.T, m vm) map[string][]string {
	t.Helper()
	serial := boot(t, m)
	r := map[string][]string{}
	for _, l := range strings.Split(serial, "\n") {
		for _, f := range reportField.FindAllStringSubmatch(l, -1) {
			r[f[1]] = append(r[f[1]], f[2])
		}
	}
	if len(r["REPORT-DONE"]) == 0 {
		t.Fatalf("%s boot from %s: no report; serial tail:\n%s", m.firmware, m.bus, tail(serial, 4000))
	}
	return r
}

func one(r map[string][]string, k string) string {
	if len(r[k]) != 1 {
		return ""
	}
	return r[k][0]
}

func number(t *testing.T, r map[string][]string, k string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(one(r, k), 10, 64)
	if err != nil {
		t.Errorf("%s %q: %v", k, one(r, k), err)
	}
	return n
}

// checkGrown: the root partition ends within the last MiB of the 4 GiB disk (GPT keeps its
// backup header there), and the filesystem covers it but for ext4's metadata (under 3%).
func checkGrown(t *testing.T, r map[string][]string, off, built int64) {
	t.Helper()
	disk, part, fsys := number(t, r, "DISK-BYTES"), number(t, r, "ROOT-PART-BYTES"), number(t, r, "ROOT-FS-BYTES")
	if disk != 4<<30 {
		t.Errorf("disk %d bytes, want 4 GiB", disk)
	}
	if end := off + part; end > disk || disk-end >= 1<<20 {
		t.Errorf("root partition %d+%d ends %d bytes before the disk's end (built %d bytes): not grown", off, part, disk-end, built)
	}
	if fsys < part*97/100 {
		t.Errorf("root filesystem %d bytes on a %d-byte partition: not grown (built %d)", fsys, part, built)
	}
	t.Logf("root: partition %d bytes (built %d), filesystem %d bytes, disk %d", part, built, fsys, disk)
}

// checkSettled: the ESP mounted from fstab, findmnt --verify clean, sshd up, no failed unit, and
// the hostname not the build host's.
func checkSettled(t *testing.T, r map[string][]string) {
	t.Helper()
	if esp := strings.Fields(one(r, "ESP")); len(esp) != 3 || esp[1] != "vfat" || esp[2] != "/boot/efi" {
		t.Errorf("ESP mount %q, want a vfat at /boot/efi", one(r, "ESP"))
	}
	if v := one(r, "FINDMNT-VERIFY"); !strings.HasPrefix(v, "0 ") || strings.Contains(v, "warning:") || strings.Contains(v, "error:") {
		t.Errorf("findmnt --verify: %q", v)
	}
	if s := one(r, "SSHD"); s != "active" {
		t.Errorf("ssh.service %q", s)
	}
	if f := strings.TrimSpace(one(r, "FAILED-UNITS")); f != "" {
		t.Errorf("failed units: %s", f)
	}
	if h := one(r, "HOSTNAME"); h != "localhost" {
		t.Errorf("hostname %q, want localhost (the image's was the build host's)", h)
	}
}
