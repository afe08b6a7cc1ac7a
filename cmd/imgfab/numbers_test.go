package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testimage"
)

// TestNumbersRangeChecked: every size flag and SOURCE_DATE_EPOCH is checked against what the
// formats it feeds can hold: a usage error naming the flag and the range, never a wrapped value
// or an error blaming something else.
func TestNumbersRangeChecked(t *testing.T) {
	src := testimage.WriteLayout(t, "n", testimage.GzipTar(t, testimage.BootEntries()))
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		env  string
		want []string
	}{
		{[]string{"--esp-size", "0"}, "", []string{"--esp-size 0", "1 MiB to 32 GiB"}},
		{[]string{"--esp-size", "1KiB"}, "", []string{"--esp-size 1KiB", "1 MiB to 32 GiB"}},
		{[]string{"--esp-size", "1EiB"}, "", []string{"--esp-size 1EiB", "1 MiB to 32 GiB"}},
		{[]string{"--esp-size", "1152921504606846976"}, "", []string{"--esp-size", "1 MiB to 32 GiB"}},
		{[]string{"--size", "1048576TiB"}, "", []string{"--size 1048576TiB", "64 TiB"}},
		{[]string{"--size", "65TiB"}, "", []string{"--size 65TiB", "64 TiB"}},
		{[]string{"--source-date-epoch", "-1"}, "", []string{"--source-date-epoch", `"-1"`, "0 to 4294967295"}},
		{nil, "SOURCE_DATE_EPOCH=-1", []string{"SOURCE_DATE_EPOCH", `"-1"`, "0 to 4294967295"}},
		{nil, "SOURCE_DATE_EPOCH=9223372036854775807", []string{"SOURCE_DATE_EPOCH", "0 to 4294967295"}},
		{nil, "SOURCE_DATE_EPOCH=99999999999999", []string{"SOURCE_DATE_EPOCH", "0 to 4294967295"}},
		{nil, "SOURCE_DATE_EPOCH=4294967296", []string{"SOURCE_DATE_EPOCH", "0 to 4294967295"}},
	} {
		var env []string
		if c.env != "" {
			env = []string{c.env}
		}
		args := append([]string{"build", "oci:" + src}, c.args...)
		r := runImgfab(t, env, append(args, "-o", filepath.Join(out, "d.raw"))...)
		if r.code != 2 {
			t.Errorf("%v %s: exit %d, want 2 (usage); stderr: %s", c.args, c.env, r.code, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%v %s: stderr lacks %q: %s", c.args, c.env, w, r.stderr)
			}
		}
	}
	// A --size the output format cannot hold (an error of assemble.Run's, before any work):
	// assemble TestSizeMoreThanFormatHolds.
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

// TestEarlyEpochCLI: the build's warnings reach stderr as "imgfab build: warning: …" (an image
// created before 1970), and SOURCE_DATE_EPOCH=0 from the environment is the epoch --json reports.
// What an early epoch does to the disk (the ESP dated 1980-01-01, the epoch clamped to 0, the
// warning in the Result): assemble TestEarlyEpochClampedOnESP.
func TestEarlyEpochCLI(t *testing.T) {
	layer := testimage.Layer(t, testimage.GzipTar(t, testimage.BootEntries()))
	zero := testimage.WriteLayoutCreated(t, "z", time.Time{}.Add(time.Second), layer) // 0001-01-01T00:00:01Z
	epoch0 := testimage.WriteLayout(t, "e", testimage.GzipTar(t, testimage.BootEntries()))
	for _, c := range []struct {
		name, src string
		env       []string
		warn      bool
	}{
		{"created-year-1", "oci:" + zero, nil, true},
		{"source-date-epoch-0", "oci:" + epoch0, []string{"SOURCE_DATE_EPOCH=0"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "d.raw")
			r := runImgfab(t, c.env, "build", "--json", c.src, "-o", disk)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := strings.Contains(r.stderr, "imgfab build: warning: image config: created 0001-01-01T00:00:01Z is before 1970"); got != c.warn {
				t.Errorf("warning on stderr: %v, want %v: %s", got, c.warn, r.stderr)
			}
			if !strings.Contains(r.stdout, `"source_date_epoch": 0`) {
				t.Errorf("--json does not say epoch 0: %s", r.stdout)
			}
		})
	}
}

// TestLookalikeTempKept: a user's file named like imgfab's temporary files, next to the output,
// is never removed (imgfab removes only files it created itself).
func TestLookalikeTempKept(t *testing.T) {
	src := testimage.WriteLayout(t, "l", testimage.GzipTar(t, testimage.BootEntries()))
	out := t.TempDir()
	mine := filepath.Join(out, ".d.raw.imgfab-tmp-0123456789abcdef")
	if err := os.WriteFile(mine, []byte("the user's"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"build", "oci:" + src, "-o", filepath.Join(out, "d.raw")},
		{"convert", filepath.Join(out, "d.raw"), filepath.Join(out, "d.raw")},
	} {
		if r := runImgfab(t, nil, args...); r.code != 0 && args[0] == "build" {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		if b, err := os.ReadFile(mine); err != nil || string(b) != "the user's" {
			t.Fatalf("after %s: the user's %s is %q, %v", args[0], filepath.Base(mine), b, err)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 2 {
		t.Errorf("output directory holds %v, want d.raw and the user's file", ents)
	}
}
