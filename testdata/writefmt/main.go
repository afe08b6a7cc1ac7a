// Command writefmt writes a raw disk image in one of diskfmt's formats, calling the package
// directly: the writer alone, for testdata/bench-formats.sh (imgfab convert does the same plus
// reading other input formats).
//
//	go run ./testdata/writefmt [-format NAME] [-compress C] IN.raw OUT
//	go run ./testdata/writefmt -names
//
// The format comes from OUT's extension unless -format is given.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/imgfab/imgfab/diskfmt"
)

func main() {
	format := flag.String("format", "", "output format (default: from OUT's extension)")
	compress := flag.String("compress", "", "compression (qcow2: deflate, zstd; raw: zstd, xz, gzip)")
	names := flag.Bool("names", false, "print the registered format names, one a line, and exit")
	flag.Parse()
	if *names {
		for _, n := range diskfmt.Names() {
			fmt.Println(n)
		}
		return
	}
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: writefmt [-format NAME] [-compress C] IN.raw OUT")
		os.Exit(2)
	}
	if err := run(*format, *compress, flag.Arg(0), flag.Arg(1)); err != nil {
		fmt.Fprintln(os.Stderr, "writefmt:", err)
		os.Exit(1)
	}
}

func run(format, compress, in, out string) error {
	name := format
	if name == "" {
		f, err := diskfmt.FromPath(out)
		if err != nil {
			return err
		}
		name = f.Name()
	}
	f, err := diskfmt.New(name, diskfmt.Options{Compress: compress})
	if err != nil {
		return err
	}
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	d, err := diskfmt.OpenFile(src)
	if err != nil {
		return err
	}
	return diskfmt.WriteFile(context.Background(), out, f, d)
}
