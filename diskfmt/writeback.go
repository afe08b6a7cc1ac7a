package diskfmt

import (
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// WritebackFile is an Output's file written at any offset (the ext4 writer, a Qcow2Sink) that
// hands its dirty pages to the kernel for writeback as it goes: every writebackEvery bytes
// written, a goroutine of its own calls sync_file_range(SYNC_FILE_RANGE_WRITE) on the file. That
// call blocks while it submits the pages (0.33 s for a 660 MB root done once after the build,
// issue 17), so it is made off the writer's path, while the layers still stream, and Commit's
// fsync finds little left. The hints never change what the file holds; errors are left to fsync.
type WritebackFile struct {
	*os.File
	written atomic.Int64 // bytes written since the last hint
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// Writeback returns the Output's file with writeback as it is written; Stop ends it.
func (o *Output) Writeback() *WritebackFile {
	w := &WritebackFile{File: o.File, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	w.wg.Go(func() {
		for {
			select {
			case <-w.stop:
				return
			case <-w.kick:
				_ = unix.SyncFileRange(int(w.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			}
		}
	})
	return w
}

var _ io.WriterAt = (*WritebackFile)(nil)

// WriteAt writes p at off and, each writebackEvery bytes, asks for writeback without waiting.
func (w *WritebackFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.File.WriteAt(p, off)
	if w.written.Add(int64(n)) >= writebackEvery {
		w.written.Store(0)
		w.Flush()
	}
	return n, err
}

// Flush asks for the writeback of every dirty page of the file now, without waiting.
func (w *WritebackFile) Flush() {
	select {
	case w.kick <- struct{}{}:
	default: // one is pending: it will take these pages too
	}
}

// Stop ends the writeback goroutine (after the call it is making, if any). The file stays open.
func (w *WritebackFile) Stop() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}
