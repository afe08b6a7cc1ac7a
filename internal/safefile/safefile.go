// Package safefile opens input files without blocking on what is not a regular file.
//
// os.Open on a FIFO blocks until a writer appears, and a character device may block or never
// end; a check of the file's type after os.Open comes too late. Open opens with O_NONBLOCK,
// checks the type with fstat on the open descriptor (no race with a rename), and only then clears
// O_NONBLOCK, so a FIFO, socket or device given as an input is refused at once with an error
// naming the path and its type.
//
// # Limits
//
// Linux and other Unix systems only (O_NONBLOCK, fcntl). Block devices are accepted only where a
// caller asks for them (AllowBlockDevice).
package safefile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Option changes what Open accepts.
type Option int

const (
	// AllowBlockDevice accepts a block device as well as a regular file.
	AllowBlockDevice Option = 1 << iota
)

// Open opens path read-only and returns it only when it is a regular file (or, with
// AllowBlockDevice, a block device). what names the input in errors ("image", "layer", …).
func Open(path, what string, opts ...Option) (*os.File, fs.FileInfo, error) {
	var o Option
	for _, x := range opts {
		o |= x
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", what, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("opening %s: %w", what, err)
	}
	m := fi.Mode()
	ok := m.IsRegular() || (o&AllowBlockDevice != 0 && m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0)
	if !ok {
		f.Close()
		return nil, nil, fmt.Errorf("opening %s %s: not a regular file (%s)", what, path, kind(m))
	}
	// Back to blocking reads: regular files ignore O_NONBLOCK, but clear it so that nothing
	// downstream sees EAGAIN from a block device.
	if m&fs.ModeDevice != 0 {
		sc, err := f.SyscallConn()
		if err == nil {
			var ferr error
			err = sc.Control(func(fd uintptr) { ferr = syscall.SetNonblock(int(fd), false) })
			if err == nil {
				err = ferr
			}
		}
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("opening %s %s: clearing O_NONBLOCK: %w", what, path, err)
		}
	}
	return f, fi, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "mode " + m.String()
}
