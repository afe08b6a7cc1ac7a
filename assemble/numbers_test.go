package assemble

import (
	"errors"
	"testing"

	"github.com/imgfab/imgfab/bootloader"
	"github.com/imgfab/imgfab/partition"
)

// TestCheckNumbers: the one range checker of a Plan's numbers (the CLI reports its RangeError as
// a usage error) takes the edges and refuses one past them, naming the field.
func TestCheckNumbers(t *testing.T) {
	epoch := func(e int64) *int64 { return &e }
	for _, c := range []struct {
		p     Plan
		field string // "" when fine
	}{
		{Plan{}, ""},
		{Plan{Size: MaxDiskSize, ESPSize: bootloader.MaxESPSize, SourceDateEpoch: epoch(MaxEpoch)}, ""},
		{Plan{Size: partition.MiB, ESPSize: bootloader.MinESPSize, SourceDateEpoch: epoch(0)}, ""},
		{Plan{Size: MaxDiskSize + partition.MiB}, "Size"},
		{Plan{Size: -partition.MiB}, "Size"},
		{Plan{Size: partition.MiB + 512}, "Size"},
		{Plan{ESPSize: bootloader.MinESPSize - 1}, "ESPSize"},
		{Plan{ESPSize: bootloader.MaxESPSize + 1}, "ESPSize"},
		{Plan{SourceDateEpoch: epoch(-1)}, "SourceDateEpoch"},
		{Plan{SourceDateEpoch: epoch(MaxEpoch + 1)}, "SourceDateEpoch"},
	} {
		err := c.p.CheckNumbers()
		var re *RangeError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: %v, want no error", c.p, err)
		case c.field != "" && (!errors.As(err, &re) || re.Field != c.field || re.Want == ""):
			t.Errorf("%+v: %v, want a RangeError on %s", c.p, err, c.field)
		}
	}
}
