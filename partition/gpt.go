package partition

import (
	"fmt"
	"io/fs"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/imgfab/imgfab/internal/iox"
)

// WriteGPT writes a protective MBR, the primary GPT at LBA 1-33 and the backup GPT in the last 33
// sectors of f, which must already be l.Size bytes long. Sector 0 bytes 0-445 (boot code) are left
// as they are, so a BIOS loader written there earlier survives.
func WriteGPT(f iox.DiskFile, l Layout) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("writing partition table: %w", err)
	}
	if st.Size() != l.Size {
		return fmt.Errorf("writing partition table: disk file is %d bytes, layout wants %d", st.Size(), l.Size)
	}
	t := &gpt.Table{
		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
		GUID:               l.GUID,
		ProtectiveMBR:      true,
	}
	for i, p := range l.Partitions {
		// Partitions are 1 MiB aligned, except a BIOS boot partition, which may sit in the gap
		// between the primary entry array (ends at LBA 33) and the first MiB.
		aligned := p.Offset%MiB == 0 || (p.Type == TypeBIOSBoot && p.Offset%SectorSize == 0 && p.Offset >= 34*SectorSize)
		if !aligned || p.Size%SectorSize != 0 || p.Size <= 0 {
			return fmt.Errorf("writing partition table: partition %d (%s) at %d size %d is not aligned", i+1, p.Name, p.Offset, p.Size)
		}
		if p.End() > l.Size-Tail {
			return fmt.Errorf("writing partition table: partition %d (%s) ends at %d, past the last usable byte %d", i+1, p.Name, p.End(), l.Size-Tail)
		}
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: i + 1,
			Start: uint64(p.Offset / SectorSize),
			End:   uint64(p.End()/SectorSize - 1),
			Size:  uint64(p.Size),
			Type:  gpt.Type(p.Type),
			Name:  p.Name,
			GUID:  p.GUID,
		})
	}
	if err := t.Write(noSync{f}, l.Size); err != nil {
		return fmt.Errorf("writing partition table: %w", err)
	}
	return nil
}

// noSync is the disk file without its Sync method. go-diskfs's Table.Write fsyncs the file after
// each of its five writes when it can; on a build's scratch disk that is five flushes of the whole
// disk to storage (0.35 s of a 3.5 s build of the Debian fixture, BENCHMARKS.md), for a file that
// is either thrown away or synced once when its output is committed.
type noSync struct{ f iox.DiskFile }

func (n noSync) Stat() (fs.FileInfo, error)                { return n.f.Stat() }
func (n noSync) Read(p []byte) (int, error)                { return n.f.Read(p) }
func (n noSync) ReadAt(p []byte, off int64) (int, error)   { return n.f.ReadAt(p, off) }
func (n noSync) WriteAt(p []byte, off int64) (int, error)  { return n.f.WriteAt(p, off) }
func (n noSync) Seek(off int64, whence int) (int64, error) { return n.f.Seek(off, whence) }
func (n noSync) Close() error                              { return nil }
