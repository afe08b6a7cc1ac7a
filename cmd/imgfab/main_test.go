package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/internal/testtool"

	"github.com/imgfab/imgfab/assemble"
)

// imgfabBin is the binary under test, built once by TestMain.
var imgfabBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imgfab-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imgfabBin = filepath.Join(dir, "imgfab")
	cmd := exec.Command("go", "build", "-o", imgfabBin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building imgfab: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type runResult struct {
	code           int
	stdout, stderr string
}

func runImgfab(t testing.TB, env []string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(imgfabBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := runResult{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running imgfab: %v", err)
	}
	return r
}

// build runs imgfab build with --json and returns the decoded result.
func build(t testing.TB, args ...string) assemble.Result {
	t.Helper()
	r := runImgfab(t, nil, append([]string{"build", "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("imgfab build %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	var res assemble.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	return res
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// extract copies [off, off+size) of a file into a new sparse file, for oracles that take a
// whole-file filesystem (e2fsck, fsck.vfat).
func extract(t testing.TB, path string, off, size int64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("part-%d.img", off))
	cmd := exec.Command("dd", "if="+path, "of="+out, "bs=1M", "iflag=skip_bytes,count_bytes",
		fmt.Sprintf("skip=%d", off), fmt.Sprintf("count=%d", size), "conv=sparse", "status=none")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, o)
	}
	if err := os.Truncate(out, size); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOracles runs every structural oracle on a raw disk built by imgfab.
func checkOracles(t *testing.T, raw string, res assemble.Result) {
	t.Helper()
	e2fsck := testtool.Need(t, "e2fsck", "e2fsprogs")
	fsck := testtool.Need(t, "fsck.vfat", "dosfstools")
	sgdisk := testtool.Need(t, "sgdisk", "gdisk")
	if out, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	// ESP and root, plus the BIOS boot partition of a hybrid or BIOS image (no filesystem).
	if len(res.Partitions) < 2 || len(res.Partitions) > 3 || res.Partitions[0].Name != "esp" || res.Partitions[1].Name != "root-x86-64" ||
		len(res.Partitions) == 3 && res.Partitions[2].Name != "bios" {
		t.Fatalf("want esp, root-x86-64 [, bios], got %+v", res.Partitions)
	}
	esp, root := res.Partitions[0], res.Partitions[1]
	if out, err := exec.Command(fsck, "-n", extract(t, raw, esp.Offset, esp.Size)).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
	out, err := exec.Command(e2fsck, "-fn", extract(t, raw, root.Offset, root.Size)).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	// EXT4.md §13.1: nothing but the pass lines and the summary.
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "e2fsck ") || strings.HasPrefix(line, "Pass ") || strings.Contains(line, " files (") && strings.HasSuffix(line, " blocks") {
			continue
		}
		t.Errorf("e2fsck -fn printed %q", line)
	}
}
