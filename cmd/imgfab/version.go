package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set with -ldflags "-X main.version=..." by release builds.
var version = "dev"

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, "Usage: imgfab version\n\nPrint imgfab's version (and the VCS revision of a development build).\n")
		return errHelp
	}
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += "+" + s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "imgfab %s\n", v)
	return nil
}
