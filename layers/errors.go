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
	return fmt.Sprintf("layer %s: entry %s: %s", e.Layer, quoteName(e.Entry), e.Reason)
}

// quoteName quotes a name for a message; one of more than 1 KiB (a PAX path may be 1 MiB) is shown
// by its first and last 500 bytes.
func quoteName(s string) string {
	if len(s) <= 1024 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…%q (%d bytes)", s[:500], s[len(s)-500:], len(s))
}
