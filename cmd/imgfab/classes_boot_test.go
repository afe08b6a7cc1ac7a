package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testtool"
	"github.com/imgfab/imgfab/spec"
)

// TestClassesBootWeb is issue 12's acceptance test: examples/classes.yaml (two classes: web from
// the Debian fixture with a user, an SSH key, a host name, a file, enabled units and /var on its
// own partition; worker from the demo) builds every listed output with one command, and web
// boots under OVMF, where the class's own report unit prints what the running system sees: the
// user's id, the authorized_keys hash and mode, the host name, the file, /var mounted from its own
// partition and the enabled unit running. Debian fixture and a boot: IMGFAB_SLOW=1.
func TestClassesBootWeb(t *testing.T) {
	if os.Getenv("IMGFAB_SLOW") == "" {
		t.Skip("slow acceptance test (Debian fixture and a boot): IMGFAB_SLOW=1 or make test")
	}
	cache := filepath.Dir(fixture(t, "debian/oci", "mkdebian.sh"))
	fixture(t, "demo/oci", "mkdemo.sh")
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "classes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "classes.yaml")
	body := strings.ReplaceAll(string(example), "oci:../testdata/cache/", "oci:"+filepath.Dir(cache)+"/")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runImgfab(t, nil, "build", "-f", file, "--json")
	if r.code != 0 {
		t.Fatalf("build -f examples/classes.yaml: exit %d\n%s", r.code, r.stderr)
	}
	results := classLines(t, r.stdout)
	if len(results) != 2 || results[0].Class != "web" || results[1].Class != "worker" {
		t.Fatalf("want web then worker, got %d results", len(results))
	}
	for _, p := range []string{"web.qcow2", "web.raw", "worker.qcow2", "worker.vmdk"} {
		if _, err := os.Stat(filepath.Join(dir, "out", p)); err != nil {
			t.Errorf("output %s: %v", p, err)
		}
	}
	web := results[0].Result
	var varGUID, rootGUID string
	for _, p := range web.Partitions {
		switch {
		case p.Mount == "/var":
			varGUID = strings.ToLower(p.GUID)
		case strings.HasPrefix(p.Name, "root"):
			rootGUID = strings.ToLower(p.GUID)
		}
	}
	if varGUID == "" || rootGUID == "" {
		t.Fatalf("no /var or root partition in %+v", web.Partitions)
	}
	raw := filepath.Join(dir, "out", "web.raw")
	if out, err := exec.Command(testtool.Need(t, "sgdisk", "gdisk"), "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}

	f, err := spec.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	keys := sha256.Sum256([]byte(f.Class("web").Users[0].SSHAuthorizedKeys[0] + "\n"))
	serial := bootUEFI(t, filepath.Join(dir, "out", "web.qcow2"), "qcow2", 10*time.Minute)
	for _, want := range []string{
		"IMGFAB-ID uid=1500(ops) gid=1500(ops) groups=1500(ops),27(sudo)",
		fmt.Sprintf("IMGFAB-KEYS %s 600 ops:ops", hex.EncodeToString(keys[:])),
		"IMGFAB-HOSTNAME web",
		"IMGFAB-MOTD web: built by imgfab from examples/classes.yaml",
		"IMGFAB-VAR ext4 " + varGUID + " root " + rootGUID,
		"IMGFAB-NETWORKD active enabled",
		"IMGFAB-REPORT-DONE",
	} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("serial tail:\n%s", tail(serial, 6000))
	}
}
