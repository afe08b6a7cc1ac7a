package diskfmt

import (
	"context"
	"fmt"
)

// Mirrored reports whether a build can write format f as a mirror of the disk being built: every
// write the build makes to its disk is made to the output's file too, at the same offset, while
// the layers stream, and FinishMirror completes it — no second read of the disk and no second
// write of it after the build (issue 17). These are the formats whose body is the disk itself:
// raw and the fixed VHD. Their bytes are the same as Write's; zeros the build wrote explicitly are
// allocated where Write would have left a hole.
func Mirrored(f Format) bool {
	switch f.(type) {
	case raw, vhdFixed:
		return true
	}
	return false
}

// FinishMirror completes a Mirrored output whose file holds, from offset 0, every write made to
// the disk d: it sizes the file to the disk (a raw) or to the disk rounded to a whole MiB followed
// by the footer (a fixed VHD, as Write makes it).
func FinishMirror(ctx context.Context, out *Output, f Format, d Disk) error {
	if err := checkDisk(d); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	switch f.(type) {
	case raw:
		if err := out.Truncate(d.Size()); err != nil {
			return fmt.Errorf("raw: sizing %s to %d bytes: %w", out.path, d.Size(), err)
		}
		return nil
	case vhdFixed:
		size, err := vhdSize(d)
		if err != nil {
			return fmt.Errorf("vhd: %w", err)
		}
		if err := out.Truncate(size); err != nil {
			return fmt.Errorf("vhd: sizing %s to %d bytes: %w", out.path, size, err)
		}
		footer := vhdFooter(identityFrom(ctx), f.Name(), size, vhdDiskFixed, vhdNoOffset)
		if _, err := out.WriteAt(footer, size); err != nil {
			return fmt.Errorf("vhd: writing footer at %d: %w", size, err)
		}
		return nil
	}
	return fmt.Errorf("diskfmt: %s is not written as a mirror of the disk", f.Name())
}
