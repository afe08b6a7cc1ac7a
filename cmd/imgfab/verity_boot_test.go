package main

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/assemble"
	"github.com/imgfab/imgfab/internal/testtool"
)

// TestVerityRootBoots (issue 15): the Debian 12 verity fixture (testdata/mkdebian-verity.sh: dracut
// with systemd-veritysetup, systemd 252, systemd-boot) plus testdata/verity-check, built with
// `--rootfs erofs --verity --uki --sign-key --sign-cert --enroll-keys` from keys made by
// `imgfab keys create`, to a qcow2 and a raw.
//
// Oracles first: fsck.erofs, veritysetup verify with the build's root hash, e2fsck on /var,
// sbverify --cert on every signed EFI binary of the ESP (and not with another cert).
//
// Then, on one 4 GiB enlargement of the disk and one firmware variable store, under OVMF with
// Secure Boot: the store starts empty (setup mode) and systemd-boot enrolls the user's PK, KEK and
// db from the ESP and resets; the next boot runs with Secure Boot enforced and only those keys:
// / is erofs on /dev/mapper/root (a dm-verity device over partitions 2 and 3), read-only,
// every file of /usr reads; /var is writable ext4 and grew to the disk's end; a file written to
// /var on that boot is there on the next. Beside it: a copy with one byte of the root's data
// flipped fails at verity; a copy with one byte of the signed UKI changed is refused by the
// firmware.
func TestVerityRootBoots(t *testing.T) {
	if os.Getenv("IMGFAB_SLOW") == "" {
		t.Skip("slow acceptance test (five Debian boots): IMGFAB_SLOW=1 or make test-slow")
	}
	sbverify := testtool.Need(t, "sbverify", "sbsigntool")
	mcopy := testtool.Need(t, "mcopy", "mtools")
	src := fixture(t, "debian-verity/oci", "mkdebian-verity.sh")
	layer, err := filepath.Abs(filepath.Join("..", "..", "testdata", "verity-check"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if r := runImgfab(t, nil, "keys", "create", "--common-name", "imgfab test", keys); r.code != 0 {
		t.Fatalf("imgfab keys create: exit %d\n%s", r.code, r.stderr)
	}
	img, raw := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "disk.raw")
	res := build(t, "oci:"+src+":debian", "--layer", layer, "--rootfs", "erofs", "--verity", "--uki",
		"--sign-key", filepath.Join(keys, "db.key"), "--sign-cert", filepath.Join(keys, "db.crt"), "--enroll-keys", keys,
		"--cmdline", "console=ttyS0", "-o", img, "-o", raw)
	if res.Verity == nil {
		t.Fatal("no verity in the result")
	}
	parts := make([]testtool.Part, len(res.Partitions))
	for i, p := range res.Partitions {
		parts[i] = testtool.Part{Name: p.Name, Offset: p.Offset, Size: p.Size}
	}
	testtool.CheckReadOnlyDisk(t, raw, parts, res.Verity.RootHash)

	// sbverify on every signed binary, copied out of the ESP with mtools.
	esp := testtool.Extract(t, raw, res.Partitions[0].Offset, res.Partitions[0].Size)
	if len(res.Signed) < 2 {
		t.Fatalf("signed %+v: want systemd-boot and the UKI", res.Signed)
	}
	var uki []byte
	for _, s := range res.Signed {
		local := filepath.Join(dir, path.Base(s.Path))
		if o, err := exec.Command(mcopy, "-n", "-i", esp, "::"+s.Path, local).CombinedOutput(); err != nil {
			t.Fatalf("mcopy %s: %v\n%s", s.Path, err, o)
		}
		if o, err := exec.Command(sbverify, "--cert", filepath.Join(keys, "db.crt"), local).CombinedOutput(); err != nil {
			t.Errorf("sbverify --cert db.crt %s: %v\n%s", s.Path, err, o)
		}
		if o, err := exec.Command(sbverify, "--cert", filepath.Join(keys, "KEK.crt"), local).CombinedOutput(); err == nil {
			t.Errorf("sbverify accepts %s with the KEK's certificate:\n%s", s.Path, o)
		}
		if s.Path == res.Boot.Entry {
			if uki, err = os.ReadFile(local); err != nil {
				t.Fatal(err)
			}
		}
	}
	if uki == nil || !bytes.Contains(uki, []byte("roothash="+res.Verity.RootHash)) {
		t.Fatalf("the signed UKI %s (entry %s) does not carry roothash=%s", res.Signed, res.Boot.Entry, res.Verity.RootHash)
	}

	vars := filepath.Join(dir, "vars.fd")
	disk := enlarged(t, img, filepath.Join(dir, "run.qcow2"))
	// Setup mode: systemd-boot enrolls the keys and resets (qemu exits: -no-reboot).
	serial := boot(t, vm{firmware: "secure-setup", vars: vars, disk: disk, format: "qcow2", persist: true, timeout: 5 * time.Minute})
	if !strings.Contains(serial, "nroll") {
		t.Fatalf("no enrollment on the first start; serial tail:\n%s", tail(serial, 3000))
	}
	enrolled, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}

	var first, second map[string][]string
	t.Run("boots", func(t *testing.T) {
		t.Run("secure", func(t *testing.T) {
			t.Parallel()
			first = bootReport(t, vm{firmware: "secure-setup", vars: vars, disk: disk, format: "qcow2", persist: true, timeout: 10 * time.Minute})
			second = bootReport(t, vm{firmware: "secure-setup", vars: vars, disk: disk, format: "qcow2", persist: true, timeout: 10 * time.Minute})
		})
		t.Run("root-flipped", func(t *testing.T) {
			t.Parallel()
			bad := copyFile(t, raw, filepath.Join(t.TempDir(), "bad-root.raw"))
			flipByte(t, bad, res.Partitions[1].Offset+1024+4) // inside the erofs superblock: read at mount
			s := boot(t, vm{firmware: "secure-setup", vars: keptVars(t, enrolled), disk: bad, format: "raw", timeout: 6 * time.Minute,
				markers: []string{"device-mapper: verity", "is corrupted"}})
			if !strings.Contains(s, "is corrupted") || strings.Contains(s, "IMGFAB-REPORT-DONE") {
				t.Errorf("a flipped byte of the root was not stopped by verity; serial tail:\n%s", tail(s, 3000))
			}
			t.Logf("serial: %s", lineWith(s, "is corrupted"))
		})
		t.Run("uki-changed", func(t *testing.T) {
			t.Parallel()
			bad := copyFile(t, raw, filepath.Join(t.TempDir(), "bad-uki.raw"))
			off := findInDisk(t, bad, res.Partitions[0], uki)
			flipByte(t, bad, off+int64(len(uki))/2)
			s := boot(t, vm{firmware: "secure-setup", vars: keptVars(t, enrolled), disk: bad, format: "raw", timeout: 4 * time.Minute,
				markers: []string{"Security"}})
			if !strings.Contains(s, "Security") || strings.Contains(s, "Linux version") {
				t.Errorf("a changed UKI was not refused by the firmware; serial tail:\n%s", tail(s, 3000))
			}
			t.Logf("serial: %s", lineWith(s, "Security"))
		})
	})
	if first == nil || second == nil {
		t.Fatal("a boot did not report")
	}
	for i, r := range []map[string][]string{first, second} {
		if got := one(r, "ROOT"); got != "/dev/mapper/root erofs ro" {
			t.Errorf("boot %d: / is %q, want erofs on /dev/mapper/root, ro", i+1, got)
		}
		if got := one(r, "ROOT-DM"); !strings.HasPrefix(got, "CRYPT-VERITY-") || !strings.Contains(got, "2 ") || !strings.Contains(got, "3") {
			t.Errorf("boot %d: root device %q, want a dm-verity device over partitions 2 and 3", i+1, got)
		}
		if got := one(r, "ROOT-WRITE"); got != "refused" {
			t.Errorf("boot %d: a write to / was %s", i+1, got)
		}
		if got := one(r, "VAR"); !strings.HasSuffix(got, "4 ext4 rw") {
			t.Errorf("boot %d: /var is %q, want partition 4, ext4, rw", i+1, got)
		}
		if got := one(r, "SECUREBOOT"); got != "01 00" {
			t.Errorf("boot %d: SecureBoot and SetupMode %q, want 01 00 (enforced, user mode)", i+1, got)
		}
		for _, k := range r["KEYS"] {
			name, list, _ := strings.Cut(k, " ")
			want := "imgfab test " + map[string]string{"PK": "Platform Key", "KEK": "Key Exchange Key", "db": "Signature Database Key"}[name]
			if strings.Count(list, "imgfab test") != 1 || !strings.Contains(list, want) || strings.Contains(list, "Microsoft") {
				t.Errorf("boot %d: %s holds %q, want only the user's key (%s)", i+1, name, list, want)
			}
		}
		if len(r["KEYS"]) != 3 {
			t.Errorf("boot %d: key lists %q", i+1, r["KEYS"])
		}
		if got := one(r, "FAILED-UNITS"); strings.TrimSpace(got) != "" {
			t.Errorf("boot %d: failed units %q", i+1, got)
		}
		disk, part, fsys := number(t, r, "DISK-BYTES"), number(t, r, "VAR-PART-BYTES"), number(t, r, "VAR-FS-BYTES")
		v := res.Partitions[3]
		if disk != 4<<30 || v.Offset+part < disk-1<<20 || fsys < part*97/100 {
			t.Errorf("boot %d: /var partition %d bytes at %d, filesystem %d, disk %d: want /var grown to the disk's end", i+1, part, v.Offset, fsys, disk)
		}
	}
	if got := one(first, "READ-ALL"); got != "ok" {
		t.Errorf("reading every file of /usr through verity: %q", got)
	}
	if before, after := one(second, "VAR-BEFORE"), one(first, "VAR-AFTER"); before == "" || before != strings.TrimSpace(after) {
		t.Errorf("/var after the first boot %q, before the second %q: the write did not survive the reboot", after, before)
	}
	if one(first, "VAR-BEFORE") != "" {
		t.Errorf("/var held %q before the first boot", one(first, "VAR-BEFORE"))
	}
}

// lineWith is the first line of s that contains sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// keptVars is a UEFI variable store file holding vars (the store after the keys were enrolled).
func keptVars(t *testing.T, vars []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vars.fd")
	if err := os.WriteFile(p, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyFile copies src to dst (a sparse-unaware copy: the disks here are small).
func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	if o, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, o)
	}
	return dst
}

// flipByte inverts the byte at off of path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// findInDisk is the disk offset of file's bytes inside partition p (the ESP's files are written
// in one piece); it checks that the whole file is there.
func findInDisk(t *testing.T, disk string, p assemble.PartitionResult, file []byte) int64 {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	part := make([]byte, p.Size)
	if _, err := f.ReadAt(part, p.Offset); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(part, file[:64<<10])
	if i < 0 || !bytes.Equal(part[i:min(len(part), i+len(file))], file) {
		t.Fatalf("the file (%d bytes) is not in one piece in partition %d", len(file), p.Number)
	}
	return p.Offset + int64(i)
}
