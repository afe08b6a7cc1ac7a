package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The hostile-input corpus (testdata/hostile) and the registry-fault builds run in-process in the
// assemble package (assemble/corpus_test.go): they test the pipeline, not the CLI. What the process
// adds (exit code, message prefix, nothing left in the working directory, TMPDIR or HOME) is
// TestBuildPipelineError's.

// runSandboxed runs imgfab with the working directory, TMPDIR and HOME set to fresh empty
// directories, which must stay empty.
func runSandboxed(t *testing.T, base string, args ...string) (runResult, func()) {
	t.Helper()
	cwd, tmp, home := filepath.Join(base, "cwd"), filepath.Join(base, "tmp"), filepath.Join(base, "home")
	for _, d := range []string{cwd, tmp, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(imgfabBin, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := runResult{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running imgfab: %v", err)
	}
	return r, func() {
		for _, d := range []string{cwd, tmp, home} {
			if ents, _ := os.ReadDir(d); len(ents) != 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("imgfab created %v in %s", names, d)
			}
		}
	}
}
