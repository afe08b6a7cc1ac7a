package layers

import "fmt"

// UnsafeEntryError reports a tar entry that Flatten refuses because it could leave the image
// root or is otherwise malformed.
type UnsafeEntryError struct {
	Layer  string // layer name: "sha256:…" or the --layer path
	Entry  string // the entry name as found in the tar
	Reason string // e.g. "path escapes the image root"
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("layer %s: entry %q: %s", e.Layer, e.Entry, e.Reason)
}
