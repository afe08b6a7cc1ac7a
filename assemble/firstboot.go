package assemble

import (
	"archive/tar"
	"fmt"
	"io"
	"time"

	"github.com/imgfab/imgfab/firstboot"
	"github.com/imgfab/imgfab/partition"
)

// preparer is the first-boot preparation of this build's stream (package firstboot): the root
// and the ESP are named in /etc/fstab by the identifiers deriveIDs gave them.
func (b *build) preparer(varFSUUID string) (*firstboot.Preparer, error) {
	p := &b.p
	table := p.Boot.Table
	if table == "" {
		table = "gpt"
	}
	serial := partition.FATSerial(b.seed)
	rootFS, rootSpec := "ext4", ""
	if p.readOnly() {
		rootFS = "erofs"
	}
	if p.Verity {
		rootSpec = "/dev/mapper/root" // the data partition has the same filesystem UUID
	}
	return firstboot.New(firstboot.Options{
		Keep:         p.FirstBoot.Keep,
		NoGrow:       p.FirstBoot.NoGrow,
		KeepHostname: p.Customize != nil && p.Customize.Hostname != "",
		Table:        table,
		RootFSUUID:   uuidString(b.fsUUID),
		RootFS:       rootFS,
		RootSpec:     rootSpec,
		ReadOnly:     p.readOnly(),
		VarFSUUID:    varFSUUID,
		ESPSerial:    fmt.Sprintf("%04X-%04X", serial>>16, serial&0xFFFF),
		Epoch:        time.Unix(b.epoch, 0),
	})
}

// finishFirstBoot adds the preparation's files after the stream and records what it did.
func (b *build) finishFirstBoot(prep *firstboot.Preparer, add func(*tar.Header, io.Reader) error) error {
	b.p.progress(Event{Stage: "first-boot"})
	res, err := prep.Finish(add)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	b.res.FirstBoot = &res
	b.res.Warnings = append(b.res.Warnings, res.Warnings...)
	return nil
}
