package ext4

import (
	"fmt"
	"testing"
)

func fmtSscanf(l string, off *int64, a, b *int) (int, error) {
	return fmt.Sscanf(l, "%d %o %o", off, a, b)
}

func TestSmoke(t *testing.T) {
	img, _ := build(t, testOpts, []entry{
		dir("etc", 0755),
		reg("etc/passwd", 0644, "root:x:0:0::/root:/bin/sh\n"),
		symlink("bin", "usr/bin"),
		reg("usr/bin/sh", 04755, "#!binary"),
	})
	fsckClean(t, img)
	fsckNoChange(t, img)
}
