package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hangingServer accepts TCP connections on loopback and never answers: a registry or cloud
// endpoint that hangs.
func hangingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestSignalEndsSlowWork: SIGTERM (and SIGINT) during a slow or blocked command ends imgfab within
// 2 s with exit 143 (130), "interrupted" on stderr and no file left in the output directory.
func TestSignalEndsSlowWork(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	// An 8 TiB sparse raw holding 1 MiB of data: compressing its zeros takes hours.
	huge := filepath.Join(in, "huge.raw")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte{0xA5}, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 40); err != nil {
		t.Fatal(err)
	}
	f.Close()
	small := filepath.Join(in, "small.raw")
	if err := os.WriteFile(small, bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	hang := hangingServer(t)

	cases := []struct {
		name string
		sig  syscall.Signal
		args []string // "OUT" is replaced by the output directory
	}{
		{"convert-8TiB-to-xz", syscall.SIGTERM, []string{"convert", huge, "OUT/disk.raw.xz"}},
		{"convert-8TiB-to-gce", syscall.SIGTERM, []string{"convert", huge, "OUT/disk.tar.gz"}},
		{"convert-8TiB-to-vhd-int", syscall.SIGINT, []string{"convert", huge, "OUT/disk.raw.zst"}},
		{"build-hanging-registry", syscall.SIGTERM, []string{"build", "--insecure", "docker://" + hang + "/img:1", "-o", "OUT/disk.qcow2"}},
		{"build-hanging-registry-int", syscall.SIGINT, []string{"build", "--insecure", hang + "/img:1", "-o", "OUT/disk.raw"}},
		{"push-oci-hanging-registry", syscall.SIGTERM, []string{"push", "oci", "--no-check", "--insecure", small, hang + "/vm:1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			args := make([]string, len(c.args))
			for i, a := range c.args {
				args[i] = strings.ReplaceAll(a, "OUT", out)
			}
			cmd := exec.Command(imgfabBin, args...)
			cmd.Dir = out
			cmd.Env = append(os.Environ(), "TMPDIR="+out, "SOURCE_DATE_EPOCH=1700000000")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				t.Fatalf("ended on its own before the signal (%v): %s", err, stderr.String())
			case <-time.After(1500 * time.Millisecond):
			}
			sent := time.Now()
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("still running 5 s after %v: %s", c.sig, stderr.String())
			}
			took := time.Since(sent)
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if want := 128 + int(c.sig); code != want {
				t.Errorf("exit %d after %v, want %d; stderr: %s", code, c.sig, want, stderr.String())
			}
			if took > 2*time.Second {
				t.Errorf("took %v to end after %v, want ≤ 2 s", took, c.sig)
			}
			if !strings.Contains(stderr.String(), "interrupted") {
				t.Errorf("stderr does not say interrupted: %q", stderr.String())
			}
			if strings.Contains(stderr.String(), "context canceled") {
				t.Errorf("stderr shows Go's %q: %q", "context canceled", stderr.String())
			}
			mustBeEmpty(t, "output directory", out)
			t.Logf("%v: exit %d after %v", c.sig, code, took.Round(time.Millisecond))
		})
	}
}

// TestFIFOInputRefused: a FIFO given as an input is refused at once (opening a FIFO for reading
// would block until a writer comes), for every command that reads a file.
func TestFIFOInputRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"inspect", fifo},
		{"convert", fifo, filepath.Join(dir, "out.raw")},
		{"build", "docker-archive:" + fifo, "-o", filepath.Join(dir, "out.raw")},
		{"build", "oci:" + dir + ":x", "--layer", fifo, "-o", filepath.Join(dir, "out.raw")},
		{"push", "oci", fifo, "127.0.0.1:1/x:1"},
	} {
		start := time.Now()
		cmd := exec.Command(imgfabBin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		err := cmd.Wait()
		timer.Stop()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 1 || time.Since(start) > 5*time.Second {
			t.Errorf("%v: exit %d after %v, want 1 at once; stderr: %s", args[:2], code, time.Since(start), stderr.String())
		}
		if !strings.Contains(stderr.String(), "FIFO") {
			t.Errorf("%v: the error does not say the input is a FIFO: %s", args[:2], stderr.String())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left beside the FIFO: %v", ents)
	}
}
