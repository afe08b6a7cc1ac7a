package iox

import (
	"io"
	"io/fs"
)

// DiskFile is a disk being built, as the stages that write into it (the ext4 writer, the ESP, the
// partition table, the BIOS loader) see it: an *os.File holding a raw disk, or a view that writes
// the disk straight into an image format (diskfmt.Qcow2Sink). Stat's size is the disk's size;
// go-diskfs's file backend takes a DiskFile as it is.
type DiskFile interface {
	io.Reader
	io.ReaderAt
	io.WriterAt
	io.Seeker
	io.Closer
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
}

// Coalesced is a DiskFile whose WriteAt calls at contiguous offsets are gathered into writes of up
// to coalesceMax bytes: go-diskfs writes a FAT file one cluster (512 bytes in an ESP under 260 MB)
// per call, 80,000 pwrite(2)s for a 40 MB kernel and initrd (issue 17). Every other method, and a
// write elsewhere, first writes what is gathered; Flush does so explicitly. Not safe for
// concurrent use; the bytes that reach the file are the same, in the same places.
type Coalesced struct {
	DiskFile
	off int64  // file offset of buf[0]
	buf []byte // gathered bytes, not yet written
	err error  // the first failed flush's error
}

const coalesceMax = 1 << 20

// Coalesce wraps f; call Flush before using f directly again.
func Coalesce(f DiskFile) *Coalesced { return &Coalesced{DiskFile: f} }

// WriteAt gathers p if it continues the pending bytes and they stay within coalesceMax.
func (c *Coalesced) WriteAt(p []byte, off int64) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(c.buf) > 0 && (off != c.off+int64(len(c.buf)) || len(c.buf)+len(p) > coalesceMax) {
		if err := c.Flush(); err != nil {
			return 0, err
		}
	}
	if len(p) >= coalesceMax {
		return c.DiskFile.WriteAt(p, off)
	}
	if len(c.buf) == 0 {
		if c.buf == nil {
			c.buf = make([]byte, 0, coalesceMax)
		}
		c.off = off
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// Flush writes the gathered bytes.
func (c *Coalesced) Flush() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	_, c.err = c.DiskFile.WriteAt(c.buf, c.off)
	c.buf = c.buf[:0]
	return c.err
}

func (c *Coalesced) ReadAt(p []byte, off int64) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.DiskFile.ReadAt(p, off)
}

func (c *Coalesced) Read(p []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.DiskFile.Read(p)
}

func (c *Coalesced) Seek(off int64, whence int) (int64, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.DiskFile.Seek(off, whence)
}

func (c *Coalesced) Stat() (fs.FileInfo, error) {
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c.DiskFile.Stat()
}

func (c *Coalesced) Truncate(size int64) error {
	if err := c.Flush(); err != nil {
		return err
	}
	return c.DiskFile.Truncate(size)
}

func (c *Coalesced) Close() error {
	if err := c.Flush(); err != nil {
		return err
	}
	return c.DiskFile.Close()
}
