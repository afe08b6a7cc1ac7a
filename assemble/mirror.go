package assemble

import (
	"io/fs"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/internal/iox"
)

// mirror is an output written as the disk is built (diskfmt.Mirrored: a raw that is not the
// scratch disk, a fixed VHD): the build's writes go to its file too, through a teeDisk.
type mirror struct {
	out *diskfmt.Output
	wb  *diskfmt.WritebackFile
}

// openMirrors creates the outputs the build writes as mirrors of its disk, by output index.
func (b *build) openMirrors() (map[int]*mirror, error) {
	ms := map[int]*mirror{}
	for i, o := range b.p.Outputs {
		if o.Path == "-" || !diskfmt.Mirrored(b.formats[i]) || (i == 0 && b.scratchIsOutput()) {
			continue
		}
		out, err := diskfmt.CreateOutput(o.Path)
		if err != nil {
			closeMirrors(ms)
			return nil, err
		}
		ms[i] = &mirror{out: out, wb: out.Writeback()}
	}
	return ms, nil
}

// closeMirrors stops the mirrors' writeback and removes those not committed.
func closeMirrors(ms map[int]*mirror) {
	for _, m := range ms {
		m.wb.Stop()
		m.out.Abort() // nothing after Commit
	}
}

// teeDisk is the disk being built with its writes and truncations made to the mirrors' files too,
// at the same offsets; reads come from the disk. It has only iox.DiskFile's methods, so no write
// can reach the disk around it.
type teeDisk struct {
	disk    iox.DiskFile
	mirrors []*diskfmt.WritebackFile
}

var _ iox.DiskFile = (*teeDisk)(nil)

func (t *teeDisk) WriteAt(p []byte, off int64) (int, error) {
	n, err := t.disk.WriteAt(p, off)
	for _, m := range t.mirrors {
		if _, merr := m.WriteAt(p[:n], off); merr != nil && err == nil {
			err = merr
		}
	}
	return n, err
}

func (t *teeDisk) Truncate(size int64) error {
	if err := t.disk.Truncate(size); err != nil {
		return err
	}
	for _, m := range t.mirrors {
		if err := m.Truncate(size); err != nil {
			return err
		}
	}
	return nil
}

func (t *teeDisk) Read(p []byte) (int, error)                { return t.disk.Read(p) }
func (t *teeDisk) ReadAt(p []byte, off int64) (int, error)   { return t.disk.ReadAt(p, off) }
func (t *teeDisk) Seek(off int64, whence int) (int64, error) { return t.disk.Seek(off, whence) }
func (t *teeDisk) Stat() (fs.FileInfo, error)                { return t.disk.Stat() }
func (t *teeDisk) Close() error                              { return t.disk.Close() }
