package diskfmt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Output is a file being written that appears at its path only when committed. Write to it through
// the embedded *os.File (which also lets the raw writer leave holes).
type Output struct {
	*os.File
	path string // the final path
	done bool   // committed or aborted
}

// tempPrefix is the name prefix of the temporary files for the output named base.
func tempPrefix(base string) string { return "." + base + ".imgfab-tmp-" }

// CreateOutput creates a temporary file beside path (same directory, named ".NAME.imgfab-tmp-*",
// mode 0666 minus umask) and returns it for writing. Commit renames it to path; Abort, or a Commit
// that fails, removes it. Stale temporary files of the same path, left by a killed run, are removed
// first; a temporary file still in use by a live process is locked (flock) and left alone.
func CreateOutput(path string) (*Output, error) {
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("diskfmt: output path %q does not name a file", path)
	}
	if dir == "" {
		dir = "."
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("diskfmt: output path %s is a directory", path)
	}
	prefix := tempPrefix(base)
	if err := removeStaleTemps(dir, prefix); err != nil {
		return nil, fmt.Errorf("diskfmt: creating output %s: %w", path, err)
	}
	for try := 0; ; try++ {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil { // only names the temporary file
			return nil, fmt.Errorf("diskfmt: creating output %s: %w", path, err)
		}
		name := filepath.Join(dir, prefix+hex.EncodeToString(r[:]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) && try < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("diskfmt: creating output %s: %w", path, err)
		}
		if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			os.Remove(name)
			return nil, fmt.Errorf("diskfmt: locking temporary output %s: %w", name, err)
		}
		return &Output{File: f, path: path}, nil
	}
}

// removeStaleTemps removes the files in dir named prefix* that no live process holds locked.
func removeStaleTemps(dir, prefix string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		name := filepath.Join(dir, e.Name())
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("opening stale temporary file: %w", err)
		}
		if flock(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // in use by a live process
			continue
		}
		err = os.Remove(name)
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale temporary file: %w", err)
		}
	}
	return nil
}

func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.Flock(int(fd), how) }); err != nil {
		return err
	}
	return ferr
}

// Path returns the final path of the output.
func (o *Output) Path() string { return o.path }

// Commit flushes the file to stable storage, closes it, renames it to its final path and syncs the
// directory. On error the temporary file is removed.
func (o *Output) Commit() error {
	if o.done {
		return fmt.Errorf("diskfmt: output %s already committed or aborted", o.path)
	}
	tmp := o.File.Name()
	fail := func(step string, err error) error {
		o.done = true
		o.File.Close()
		os.Remove(tmp)
		return fmt.Errorf("diskfmt: committing output %s: %s: %w", o.path, step, err)
	}
	if err := o.File.Sync(); err != nil {
		return fail("fsync", err)
	}
	if err := os.Rename(tmp, o.path); err != nil {
		return fail("rename", err)
	}
	o.done = true
	cerr := o.File.Close() // releases the lock, after the rename
	if d, err := os.Open(filepath.Dir(o.path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil && cerr == nil {
			cerr = err
		}
	}
	if cerr != nil {
		return fmt.Errorf("diskfmt: committing output %s: %w", o.path, cerr)
	}
	return nil
}

// Abort closes and removes the temporary file. It does nothing after Commit or a previous Abort,
// so `defer out.Abort()` is the usual pattern.
func (o *Output) Abort() error {
	if o.done {
		return nil
	}
	o.done = true
	o.File.Close()
	if err := os.Remove(o.File.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("diskfmt: removing temporary output %s: %w", o.File.Name(), err)
	}
	return nil
}

// WriteFile writes d to path in format f atomically: CreateOutput, f.Write, Commit; on any error
// nothing is left at path (an existing file there is kept).
func WriteFile(ctx context.Context, path string, f Format, d Disk) error {
	out, err := CreateOutput(path)
	if err != nil {
		return err
	}
	defer out.Abort()
	if err := f.Write(ctx, out, d); err != nil {
		return fmt.Errorf("diskfmt: writing %s as %s: %w", path, f.Name(), err)
	}
	return out.Commit()
}
