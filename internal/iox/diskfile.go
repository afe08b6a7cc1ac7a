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
