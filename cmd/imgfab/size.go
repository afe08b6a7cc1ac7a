package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize reads "4GiB", "4G", "512MiB", "512M", "1T", or a plain number of bytes. Binary units
// throughout (G = GiB), as qemu-img and truncate read them.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	units := []struct {
		suffix []string
		mult   int64
	}{
		{[]string{"EiB", "E", "EB"}, 1 << 60},
		{[]string{"PiB", "P", "PB"}, 1 << 50},
		{[]string{"TiB", "T", "TB"}, 1 << 40},
		{[]string{"GiB", "G", "GB"}, 1 << 30},
		{[]string{"MiB", "M", "MB"}, 1 << 20},
		{[]string{"KiB", "K", "KB"}, 1 << 10},
		{[]string{"B"}, 1},
	}
outer:
	for _, u := range units {
		for _, suf := range u.suffix {
			if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(suf)) {
				t = strings.TrimSpace(t[:len(t)-len(suf)])
				mult = u.mult
				break outer
			}
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || t == "" {
		return 0, fmt.Errorf("bad size %q (use e.g. 4GiB, 512MiB)", s)
	}
	v := n * float64(mult)
	if v >= 1<<62 {
		return 0, fmt.Errorf("size %q is too large (at most 4 EiB)", s)
	}
	return int64(v), nil
}
