package assemble

import (
	"fmt"

	"github.com/imgfab/imgfab/bootloader"
)

// checkArch holds the image config's architecture against the platform: without --platform an
// image of another architecture builds for its own (a single-platform image needs no flag); with
// one, a disagreement is an error naming both. The boot options are checked again for the
// architecture taken.
func (b *build) checkArch(configArch string) error {
	if configArch == "" || configArch == b.arch.Name {
		return nil
	}
	if b.p.Platform != "" {
		return fmt.Errorf("image config: architecture %s, but --platform is %s", configArch, b.p.Platform)
	}
	a, err := bootloader.ArchFor(configArch)
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	b.arch = a
	b.platform.Architecture = a.Name
	b.platform.Variant = ""
	return b.p.Boot.ValidateFor(a)
}
