package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfab/imgfab/internal/testimage"
	"github.com/imgfab/imgfab/internal/testtool"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Fault tests: imgfab killed with SIGKILL at random points of a build and of a convert, and
// builds and converts into a full filesystem. In every case the output path holds nothing, the
// previous file, or the complete new one; never a partial file, and nothing is created anywhere
// else. Temporary files (".NAME.imgfab-tmp-*" beside the output) may survive a kill, and the next
// successful run with the same output path removes them.

// killSeed seeds the kill points; IMGFAB_KILL_SEED replays another sequence.
func killSeed(t *testing.T) uint64 {
	seed := uint64(20240606)
	if s := os.Getenv("IMGFAB_KILL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("IMGFAB_KILL_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("kill points seeded with %d (IMGFAB_KILL_SEED=N replays another sequence)", seed)
	return seed
}

// patternBytes fills b with an xorshift stream (never a whole zero block: zero blocks become holes).
func patternBytes(b []byte, x uint64) uint64 {
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return x
}

// writeBigLayout writes, streaming, an OCI layout (tag "big") of one uncompressed layer: the boot
// entries and files data/fNN of 8 MiB of non-zero data each, dataMiB MiB in all.
func writeBigLayout(t *testing.T, dataMiB int) string {
	t.Helper()
	root := t.TempDir()
	blobs := filepath.Join(root, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(blobs, "layer.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	tw := tar.NewWriter(bw)
	ents := append(testimage.BootEntries(), testimage.Dir("data/", 0o755))
	for _, e := range ents {
		hdr := e.Hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.Body)
	}
	buf := make([]byte, 8<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < dataMiB/8; i++ {
		x = patternBytes(buf, x)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/f%02d", i), Mode: 0o644,
			Size: int64(len(buf)), ModTime: time.Unix(1600000000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if err := os.Rename(tmp, filepath.Join(blobs, digest.Hex)); err != nil {
		t.Fatal(err)
	}
	putBlob := func(mt types.MediaType, v any) v1.Descriptor {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		d := v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
		if err := os.WriteFile(filepath.Join(blobs, d.Digest.Hex), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg := putBlob(types.OCIConfigJSON, v1.ConfigFile{Architecture: "amd64", OS: "linux",
		Created: v1.Time{Time: time.Unix(1650000000, 0).UTC()},
		RootFS:  v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{digest}}})
	man := putBlob(types.OCIManifestSchema1, v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfg,
		Layers: []v1.Descriptor{{MediaType: types.OCIUncompressedLayer, Size: size, Digest: digest}}})
	man.Annotations = map[string]string{"org.opencontainers.image.ref.name": "big"}
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{man}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// openPTY returns a pseudo-terminal pair: imgfab draws its progress line only on a terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening /dev/ptmx: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlocking pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("opening pty slave %d: %v", n, err)
	}
	return m, s
}

// killRun is one imgfab process, killed with SIGKILL after delay unless it ends first.
type killRun struct {
	killed bool   // the process was alive and got SIGKILL
	code   int    // exit code when not killed
	stage  string // last progress stage seen on the terminal before the kill ("-" if none)
	out    string // stdout and stderr text (not the progress line)
}

var stageRE = regexp.MustCompile(`^\s*[0-9.]+s (\S+)`)

// runKilled starts imgfab in cwd with TMPDIR=tmp and stderr on a pty, and SIGKILLs it after delay
// (delay < 0: never).
func runKilled(t *testing.T, cwd, tmp string, delay time.Duration, args ...string) killRun {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	cmd := exec.Command(imgfabBin, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "SOURCE_DATE_EPOCH=1700000000")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, slave
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatalf("starting imgfab: %v", err)
	}
	slave.Close()
	stages := make(chan string, 1024)
	var text strings.Builder
	readDone := make(chan struct{})
	go func() { // drain the terminal: progress lines ("\r\x1b[K  1.2s rootfs ..."), then messages
		defer close(readDone)
		br := bufio.NewReader(master)
		for {
			chunk, err := br.ReadString('\r')
			for _, line := range strings.Split(chunk, "\n") {
				line = strings.TrimSuffix(strings.TrimPrefix(line, "\x1b[K"), "\r")
				if m := stageRE.FindStringSubmatch(line); m != nil {
					select {
					case stages <- m[1]:
					default:
					}
				} else if strings.TrimSpace(line) != "" {
					text.WriteString(line + "\n")
				}
			}
			if err != nil { // EIO once the process is gone
				return
			}
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	r := killRun{stage: "-"}
	var err error
	if delay < 0 {
		err = <-waited
	} else {
		select {
		case err = <-waited:
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			err = <-waited
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
					r.killed = true
				}
			}
		}
	}
	<-readDone
	close(stages)
	for s := range stages {
		r.stage = s
	}
	r.out = stdout.String() + text.String()
	if !r.killed {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("running imgfab %s: %v", strings.Join(args, " "), err)
		}
	}
	return r
}

// killTarget is one command under the kill test and what its outputs may hold.
type killTarget struct {
	name    string
	args    []string // relative output names: the command runs in the output directory
	outputs []string // output names
	want    map[string]string
	dur     time.Duration // a full run, measured
}

var tempRE = regexp.MustCompile(`^\.(.+)\.imgfab-tmp-[0-9a-f]{16}$`)

// checkKillState checks the output directory after a run: each output is absent (when there was
// none before), the previous file, or complete; other entries are temporary files of the outputs.
// It returns how many temporary files are left and how many outputs are complete.
func checkKillState(t *testing.T, outDir string, kt *killTarget, prev map[string]string) (temps, complete int) {
	t.Helper()
	ents, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	isOut := map[string]bool{}
	for _, o := range kt.outputs {
		isOut[o] = true
	}
	for _, e := range ents {
		if isOut[e.Name()] {
			continue
		}
		if m := tempRE.FindStringSubmatch(e.Name()); m != nil && isOut[m[1]] && e.Type().IsRegular() {
			temps++
			continue
		}
		t.Errorf("%s: unexpected file %s in the output directory", kt.name, e.Name())
	}
	for _, o := range kt.outputs {
		p := filepath.Join(outDir, o)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			if prev[o] != "" {
				t.Errorf("%s: the previous %s is gone, and no new one replaced it", kt.name, o)
			}
			continue
		}
		switch got := testtool.FileSum(t, p); got {
		case kt.want[o]:
			complete++
		case prev[o]:
		default:
			st, _ := os.Stat(p)
			t.Errorf("%s: %s holds a partial or wrong file: %d bytes, sha256 %s; want %s (complete) or %s (previous)",
				kt.name, o, st.Size(), got, kt.want[o], prev[o])
		}
	}
	return temps, complete
}

// mustBeEmpty fails when dir holds anything.
func mustBeEmpty(t *testing.T, what, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Errorf("imgfab created %s in %s (%s)", e.Name(), dir, what)
	}
}

// dirState lists every file under dir with its size and modification time.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %v %d\n", p, fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// killLoop runs kt killed at n points spread over its measured duration, checking the state after
// each; after every 5th kill and at the end a full run must succeed, produce the complete outputs
// and leave no temporary file.
func killLoop(t *testing.T, rng *rand.Rand, kt *killTarget, n int, outDir, cwd, tmp string) {
	prevDir := t.TempDir()
	stages := map[string]int{}
	kills, finished, leftTemps, maxTemps := 0, 0, 0, 0
	for attempt := 0; kills < n; attempt++ {
		if attempt >= 3*n {
			t.Fatalf("%s: only %d of %d runs were killed alive in %d attempts (the machine got much faster than the calibration run?)",
				kt.name, kills, n, attempt)
		}
		// Half the runs start with a previous output in place (a hard link, so its checksum
		// proves imgfab never wrote into it), the other half with none.
		prev := map[string]string{}
		for _, o := range kt.outputs {
			p := filepath.Join(outDir, o)
			os.Remove(p)
			if rng.IntN(2) == 0 {
				continue
			}
			master := filepath.Join(prevDir, fmt.Sprintf("%s-%d", o, attempt))
			b := make([]byte, 4096+rng.IntN(4096))
			patternBytes(b, rng.Uint64()|1)
			if err := os.WriteFile(master, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(master, p); err != nil {
				t.Fatal(err)
			}
			prev[o] = testtool.FileSum(t, master)
		}
		delay := time.Duration(rng.Int64N(int64(kt.dur) * 95 / 100))
		r := runKilled(t, outDir, tmp, delay, kt.args...)
		if !r.killed {
			finished++
			if r.code != 0 {
				t.Fatalf("%s ended on its own before the kill at %v, with exit %d:\n%s", kt.name, delay, r.code, r.out)
			}
		} else {
			kills++
			stages[r.stage]++
		}
		temps, complete := checkKillState(t, outDir, kt, prev)
		for o, sum := range prev {
			if got := testtool.FileSum(t, filepath.Join(prevDir, fmt.Sprintf("%s-%d", o, attempt))); got != sum {
				t.Errorf("%s: the previous %s was written to (sha256 %s, was %s)", kt.name, o, got, sum)
			}
		}
		mustBeEmpty(t, "TMPDIR", tmp)
		mustBeEmpty(t, "working directory", cwd)
		maxTemps = max(maxTemps, temps)
		t.Logf("%s #%d: kill at %v: killed=%v stage=%s, %d complete outputs, %d temporary files left",
			kt.name, attempt, delay.Round(time.Millisecond), r.killed, r.stage, complete, temps)
		if t.Failed() {
			t.FailNow()
		}
		if r.killed && (kills%5 == 0 || kills == n) {
			rr := runKilled(t, outDir, tmp, -1, kt.args...)
			if rr.code != 0 {
				t.Fatalf("%s: rerun after kill %d: exit %d\n%s", kt.name, kills, rr.code, rr.out)
			}
			temps, complete := checkKillState(t, outDir, kt, nil)
			if temps != 0 || complete != len(kt.outputs) {
				t.Fatalf("%s: after a successful rerun: %d temporary files left (want 0), %d of %d outputs complete",
					kt.name, temps, complete, len(kt.outputs))
			}
			leftTemps++
		}
	}
	var ss []string
	for s, c := range stages {
		ss = append(ss, fmt.Sprintf("%s:%d", s, c))
	}
	sort.Strings(ss)
	t.Logf("%s: %d kills (stage at the kill: %s; '-' = before the first progress line or no progress), %d runs finished before their kill point, at most %d temporary files at once, %d clean reruns",
		kt.name, kills, strings.Join(ss, " "), finished, maxTemps, leftTemps)
}

// calibrate runs kt to completion twice (in outDir, each output removed first), records the
// complete outputs' checksums and the shorter wall time (the first run may find a cold cache).
func calibrate(t *testing.T, kt *killTarget, outDir, cwd, tmp string) {
	kt.want = map[string]string{}
	for i := 0; i < 2; i++ {
		for _, o := range kt.outputs {
			os.Remove(filepath.Join(outDir, o))
		}
		start := time.Now()
		r := runKilled(t, outDir, tmp, -1, kt.args...)
		d := time.Since(start)
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s", kt.name, r.code, r.out)
		}
		if i == 0 || d < kt.dur {
			kt.dur = d
		}
		for _, o := range kt.outputs {
			sum := testtool.FileSum(t, filepath.Join(outDir, o))
			if i == 1 && sum != kt.want[o] {
				t.Fatalf("%s: %s is not reproducible: sha256 %s then %s", kt.name, o, kt.want[o], sum)
			}
			kt.want[o] = sum
		}
	}
	t.Logf("%s: a full run takes %v", kt.name, kt.dur.Round(time.Millisecond))
}

// TestKillNine: SIGKILL imgfab build and imgfab convert at ≥ 20 seeded random points each.
func TestKillNine(t *testing.T) {
	rng := rand.New(rand.NewPCG(killSeed(t), 6))
	const n = 20
	dataMiB := 256 // a build of ~1–3 s on 2 cores
	if testing.Short() {
		dataMiB = 64 // still 40 kills, over shorter runs
	}
	src := writeBigLayout(t, dataMiB)
	srcState := dirState(t, src)
	cwd, tmp := t.TempDir(), t.TempDir() // must stay empty
	input := filepath.Join(t.TempDir(), "in.raw")

	t.Run("build", func(t *testing.T) {
		both := &killTarget{name: "build -o disk.raw -o disk.qcow2", outputs: []string{"disk.raw", "disk.qcow2"},
			args: []string{"build", "oci:" + src + ":big", "-o", "disk.raw", "-o", "disk.qcow2"}}
		qcow := &killTarget{name: "build -o disk.qcow2", outputs: []string{"disk.qcow2"},
			args: []string{"build", "oci:" + src + ":big", "-o", "disk.qcow2"}}
		bothDir, qcowDir := t.TempDir(), t.TempDir()
		calibrate(t, both, bothDir, cwd, tmp)
		if err := os.Link(filepath.Join(bothDir, "disk.raw"), input); err != nil {
			t.Fatal(err)
		}
		calibrate(t, qcow, qcowDir, cwd, tmp)
		killLoop(t, rng, both, n/2, bothDir, cwd, tmp)
		killLoop(t, rng, qcow, n-n/2, qcowDir, cwd, tmp)
	})
	if _, err := os.Stat(input); err != nil {
		t.Fatalf("no raw disk to convert: %v", err)
	}
	inSum := testtool.FileSum(t, input)
	t.Run("convert", func(t *testing.T) {
		for i, f := range []string{"qcow2", "vmdk"} {
			outDir, out := t.TempDir(), "disk."+f
			kt := &killTarget{name: "convert in.raw " + out, outputs: []string{out}, args: []string{"convert", input, out}}
			calibrate(t, kt, outDir, cwd, tmp)
			killLoop(t, rng, kt, n/2+i*(n%2), outDir, cwd, tmp)
		}
	})
	if got := testtool.FileSum(t, input); got != inSum {
		t.Errorf("convert changed its input: sha256 %s, was %s", got, inSum)
	}
	if got := dirState(t, src); got != srcState {
		t.Errorf("the source layout changed:\nbefore:\n%s\nafter:\n%s", srcState, got)
	}
}

// smallFS runs script (sh) with a tmpfs of sizeKiB KiB mounted at mnt (also $D), in a private mount namespace
// so the mount never outlives the test: `unshare -m` as root, else `unshare -rm` (an unprivileged
// user namespace). Extra environment is given in env.
func smallFS(t *testing.T, mnt string, sizeKiB int, env []string, script string) {
	t.Helper()
	unshare := testtool.Need(t, "unshare", "util-linux")
	full := fmt.Sprintf("set -u\nmount -t tmpfs -o size=%dk imgfab-enospc \"$D\" || exit 97\n%s\n", sizeKiB, script)
	var errs []string
	for _, flags := range []string{"-m", "-rm"} {
		cmd := exec.Command(unshare, flags, "--propagation", "private", "sh", "-c", full)
		cmd.Env = append(append(os.Environ(), "D="+mnt, "IMGFAB="+imgfabBin, "SOURCE_DATE_EPOCH=1700000000"), env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		errs = append(errs, fmt.Sprintf("unshare %s: %v: %s", flags, err, out))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 97 && !strings.Contains(string(out), "unshare failed") &&
			!strings.Contains(string(out), "unshare:") {
			break // the mount worked: the script itself failed
		}
	}
	t.Fatalf("cannot run with a small tmpfs (needs root, or unprivileged user namespaces for `unshare -rm`):\n%s",
		strings.Join(errs, "\n"))
}

// TestENOSPC: builds and converts whose output directory is a 6 MiB tmpfs fail with exit 1 and a
// message naming the step, the file and the numbers; nothing partial stays at the output path, no
// temporary file stays anywhere, and a previous output is kept as it was.
func TestENOSPC(t *testing.T) {
	src := writeBigLayout(t, 24) // 24 MiB of data: the root filesystem cannot fit in 6 MiB
	input := filepath.Join(t.TempDir(), "in.raw")
	if r := runImgfab(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, "build", "oci:"+src+":big", "-o", input); r.code != 0 {
		t.Fatalf("building the convert input: exit %d\n%s", r.code, r.stderr)
	}
	cases := []struct {
		name   string
		args   string // shell words; $D is the small filesystem, $N a normal directory
		output string // on $D
		prev   bool   // a previous output file is in place
		want   []string
	}{
		{"build-rootfs", `build oci:$SRC:big -o $D/disk.qcow2`, "disk.qcow2", false,
			[]string{"root filesystem", "writing blocks", "disk.qcow2"}},
		{"build-rootfs-prev", `build oci:$SRC:big -o $D/disk.raw`, "disk.raw", true,
			[]string{"root filesystem", "writing blocks", "disk.raw"}},
		// The scratch raw disk is on the normal directory: the qcow2 output fills $D, and the raw
		// output, committed last, must not appear either.
		{"build-write", `build oci:$SRC:big -o $N/disk.raw -o $D/disk.qcow2`, "disk.qcow2", true,
			[]string{"writing $D/disk.qcow2 as qcow2", "data clusters"}},
		{"convert-qcow2", `convert $IN $D/disk.qcow2`, "disk.qcow2", false,
			[]string{"converting $IN", "writing $D/disk.qcow2 as qcow2", "data clusters"}},
		{"convert-vmdk", `convert $IN $D/disk.vmdk`, "disk.vmdk", true, []string{"converting $IN", "$D/disk.vmdk"}},
		{"convert-raw", `convert $IN $D/disk.raw`, "disk.raw", false,
			[]string{"converting $IN", "writing $D/disk.raw as raw", "writing at"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := t.TempDir()
			normal := t.TempDir()
			tmp := t.TempDir()
			script := `
cd "$N"
if [ "$PREV" = 1 ]; then printf 'previous %s\n' "$OUTPUT" >"$D/$OUTPUT"; fi
TMPDIR=$TMP "$IMGFAB" ` + c.args + ` >"$RES/stdout" 2>"$RES/stderr"
echo $? >"$RES/rc"
ls -A "$D" >"$RES/ls"
if [ -e "$D/$OUTPUT" ]; then cat "$D/$OUTPUT" >"$RES/prev"; fi
df -k "$D" | tail -1 >"$RES/df"
`
			prev := "0"
			if c.prev {
				prev = "1"
			}
			mnt := t.TempDir()
			smallFS(t, mnt, 6<<10, []string{"N=" + normal, "RES=" + res, "TMP=" + tmp, "SRC=" + src, "IN=" + input,
				"OUTPUT=" + c.output, "PREV=" + prev}, script)
			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join(res, name))
				if err != nil {
					t.Fatalf("the script wrote no %s: %v", name, err)
				}
				return string(b)
			}
			stderr := read("stderr")
			if rc := strings.TrimSpace(read("rc")); rc != "1" {
				t.Fatalf("exit %s, want 1\n%s", rc, stderr)
			}
			t.Logf("imgfab %s (df after: %s):\n%s", c.args, strings.TrimSpace(read("df")), stderr)
			if !strings.Contains(stderr, "no space left on device") {
				t.Errorf("message does not say \"no space left on device\": %s", stderr)
			}
			if !regexp.MustCompile(`[0-9]{3,}`).MatchString(stderr) {
				t.Errorf("message has no numbers (bytes, offsets or blocks): %s", stderr)
			}
			if strings.Contains(stderr, "panic") {
				t.Errorf("panic: %s", stderr)
			}
			for _, w := range c.want {
				w = strings.NewReplacer("$IN", input, "$D", mnt, "$N", normal).Replace(w)
				if !strings.Contains(stderr, w) {
					t.Errorf("message lacks %q: %s", w, stderr)
				}
			}
			ls := strings.Fields(read("ls"))
			switch {
			case c.prev && (len(ls) != 1 || ls[0] != c.output):
				t.Errorf("small filesystem holds %q, want only the previous %s", ls, c.output)
			case !c.prev && len(ls) != 0:
				t.Errorf("small filesystem holds %q, want nothing", ls)
			}
			if c.prev {
				if got, want := read("prev"), "previous "+c.output+"\n"; got != want {
					t.Errorf("the previous %s was changed: %q, want %q", c.output, got, want)
				}
			}
			mustBeEmpty(t, "the normal directory", normal)
			mustBeEmpty(t, "TMPDIR", tmp)
		})
	}
}
