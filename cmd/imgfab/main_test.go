package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	// Built before XDG_CACHE_HOME changes: go's build cache lives under it by default, and a fresh
	// one would rebuild every dependency (minutes) on each run.
	imgfabBin = filepath.Join(dir, "imgfab")
	cmd := exec.Command("go", "build", "-o", imgfabBin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building imgfab: %v\n%s", err, out)
		os.Exit(1)
	}
	// Class-file builds keep blobs and outputs in $XDG_CACHE_HOME/imgfab: the tests' own, never
	// the user's, removed at the end.
	if err := os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache")); err != nil {
		fmt.Fprintln(os.Stderr, err)
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

// checkOracles is testtool.CheckDisk on a raw disk built by imgfab.
func checkOracles(t *testing.T, raw string, res assemble.Result) {
	t.Helper()
	parts := make([]testtool.Part, len(res.Partitions))
	for i, p := range res.Partitions {
		parts[i] = testtool.Part{Name: p.Name, Offset: p.Offset, Size: p.Size}
	}
	testtool.CheckDisk(t, raw, parts)
}
