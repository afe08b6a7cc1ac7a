package diskfmt

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"time"
)

// Identity is what a format derives its identifiers and timestamps from, so that the same build
// gives the same bytes: the VMDK content ID, the VHD unique ID and time stamp, the GCE tar entry's
// modification time.
type Identity struct {
	// Seed is hashed with the format name and the disk size into every identifier. The build
	// passes its own seed (a hash of its inputs); nil means "derive from the disk size only".
	Seed []byte
	// Time is every timestamp written (the build's source date epoch). The zero Time means
	// 2000-01-01 00:00:00 UTC (the VHD epoch).
	Time time.Time
}

type identityKey struct{}

// WithIdentity returns a context that makes Write derive identifiers and timestamps from id.
// Without it, every identifier derives from the disk size alone and every timestamp is
// 2000-01-01 00:00:00 UTC.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// vhdEpoch is the VHD time origin (VHD spec, "Hard Disk Footer Format", Time Stamp) and the
// default timestamp.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// identityFrom returns the identity set with WithIdentity, or the default one: no seed (so IDs
// depend on the disk size only) and Time 2000-01-01 UTC.
//
// The default seed is deliberately not the disk's extents: the writers promise the same output
// for the same guest bytes whatever the hole layout of the input.
func identityFrom(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	if id.Time.IsZero() {
		id.Time = vhdEpoch
	}
	return id
}

// sum returns sha256(Seed ‖ format ‖ size as a big-endian u64): the source of every identifier
// a format writes. Without a seed, Seed is the size (big-endian u64) itself.
func (id Identity) sum(format string, size int64) [32]byte {
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(size))
	h := sha256.New()
	if id.Seed == nil {
		h.Write(sz[:])
	} else {
		h.Write(id.Seed)
	}
	h.Write([]byte(format))
	h.Write(sz[:])
	return [32]byte(h.Sum(nil))
}

// vhdTime returns the VHD time stamp of id.Time: seconds since 2000-01-01 00:00:00 UTC, clamped
// to [0, 2^32-1].
func (id Identity) vhdTime() uint32 {
	s := id.Time.Unix() - vhdEpoch.Unix()
	return uint32(min(max(s, 0), math.MaxUint32))
}
