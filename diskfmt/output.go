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
	"sync"

	"golang.org/x/sys/unix"
)

// Output is a file being written that appears at its path only when committed. Write to it through
// the embedded *os.File (which also lets the raw writer leave holes).
type Output struct {
	*os.File
	path  string // the final path
	named string // the temporary file's name; "" while it is an unnamed O_TMPFILE
	done  bool   // committed or aborted
}

// tempPrefix is the name prefix of the temporary files for the output named base.
func tempPrefix(base string) string { return "." + base + ".imgfab-tmp-" }

// CreateOutput creates the file that Commit will put at path, in path's directory (mode 0666
// minus umask), and returns it for writing. Commit gives it a temporary name ".NAME.imgfab-tmp-X"
// (created exclusively, X random), then renames it to path; Abort, or a Commit that fails, removes it.
//
// The file is made with O_TMPFILE, so it has no name until Commit: a run killed before then
// leaves nothing behind, and imgfab never has to clean up after one — it removes only files it
// created itself, never a file that merely looks like its own. Where the filesystem has no
// O_TMPFILE (NFS, some FUSE), the file is named from the start; a run killed there (SIGKILL; not
// SIGINT or SIGTERM, which are handled) may leave its ".NAME.imgfab-tmp-*" file for the user to
// delete.
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
	f, err := openUnnamed(dir, filepath.Join(dir, tempPrefix(base)+"(unnamed)"), 0o666)
	if err == nil {
		return &Output{File: f, path: path}, nil
	}
	if !errors.Is(err, errNoTmpfile) {
		return nil, fmt.Errorf("diskfmt: creating output %s: %w", path, err)
	}
	// No O_TMPFILE here: a named temporary file.
	f, name, err := createExclusive(dir, tempPrefix(base), func(name string) (*os.File, error) {
		return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
	})
	if err != nil {
		return nil, fmt.Errorf("diskfmt: creating output %s: %w", path, err)
	}
	o := &Output{File: f, path: path, named: name}
	named.Store(o, o.named)
	return o, nil
}

// errNoTmpfile: the filesystem has no O_TMPFILE (EOPNOTSUPP, EISDIR, EINVAL, …); make a named file.
var errNoTmpfile = errors.New("no O_TMPFILE")

// openUnnamed creates an unnamed file (O_TMPFILE) in dir, called name in messages. Where the
// filesystem has none it returns errNoTmpfile; errors a named file would meet too (missing
// directory, no permission, read-only, no space) are returned as they are.
func openUnnamed(dir, name string, perm uint32) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, perm)
	switch {
	case err == nil:
		return os.NewFile(uintptr(fd), name), nil
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EACCES) ||
		errors.Is(err, unix.EROFS) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT):
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err} // a named file would fail too
	}
	return nil, errNoTmpfile
}

// named holds the live Outputs that have a temporary name, for RemoveTemps.
var named sync.Map // *Output → its temporary name

// RemoveTemps removes the temporary names of every Output not yet committed or aborted: for a
// process about to exit on a signal, so that it leaves no partial output behind. Outputs still
// unnamed (O_TMPFILE) need nothing: the kernel frees them with the process.
func RemoveTemps() {
	named.Range(func(_, name any) bool {
		os.Remove(name.(string))
		return true
	})
}

// createExclusive calls create with dir/prefix+16 random hex digits until a name is free (create
// must fail with fs.ErrExist when it is taken), and returns the file and its name.
func createExclusive(dir, prefix string, create func(name string) (*os.File, error)) (*os.File, string, error) {
	for try := 0; ; try++ {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil { // only names the temporary file
			return nil, "", err
		}
		name := filepath.Join(dir, prefix+hex.EncodeToString(r[:]))
		f, err := create(name)
		if errors.Is(err, fs.ErrExist) && try < 10 {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return f, name, nil
	}
}

// linkTemp gives the unnamed file a temporary name beside the output (linkat through
// /proc/self/fd, which needs no privilege; AT_EMPTY_PATH first, which does).
func (o *Output) linkTemp() error {
	dir, base := filepath.Split(o.path)
	if dir == "" {
		dir = "."
	}
	fd := int(o.File.Fd())
	_, name, err := createExclusive(dir, tempPrefix(base), func(name string) (*os.File, error) {
		err := unix.Linkat(fd, "", unix.AT_FDCWD, name, unix.AT_EMPTY_PATH)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
			err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
		}
		if errors.Is(err, unix.EEXIST) {
			return nil, fs.ErrExist
		}
		return nil, err
	})
	if err != nil {
		return fmt.Errorf("naming the temporary file: %w", err)
	}
	o.named = name
	named.Store(o, o.named)
	return nil
}

// Path returns the final path of the output.
func (o *Output) Path() string { return o.path }

// Commit flushes the file to stable storage, names it, closes it, renames it to its final path
// and syncs the directory. On error the temporary file is removed.
func (o *Output) Commit() error {
	if o.done {
		return fmt.Errorf("diskfmt: output %s already committed or aborted", o.path)
	}
	defer named.Delete(o)
	fail := func(step string, err error) error {
		o.done = true
		o.File.Close()
		if o.named != "" {
			os.Remove(o.named)
		}
		return fmt.Errorf("diskfmt: committing output %s: %s: %w", o.path, step, err)
	}
	if err := o.File.Sync(); err != nil {
		return fail("fsync", err)
	}
	if o.named == "" {
		if err := o.linkTemp(); err != nil {
			return fail("link", err)
		}
	}
	if err := os.Rename(o.named, o.path); err != nil {
		return fail("rename", err)
	}
	o.done = true
	cerr := o.File.Close()
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

// Abort closes the file and removes its temporary name, if it has one. It does nothing after
// Commit or a previous Abort, so `defer out.Abort()` is the usual pattern.
func (o *Output) Abort() error {
	if o.done {
		return nil
	}
	o.done = true
	defer named.Delete(o)
	o.File.Close()
	if o.named == "" {
		return nil
	}
	if err := os.Remove(o.named); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("diskfmt: removing temporary output %s: %w", o.named, err)
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
