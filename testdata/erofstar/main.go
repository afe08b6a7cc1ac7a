// Command erofstar writes an EROFS image from a tar file with rootfs/erofs, as a build streams a
// tree into it (testdata/bench-erofs.sh times it against mkfs.erofs).
//
//	go run ./testdata/erofstar IN.tar OUT.erofs
package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imgfab/imgfab/rootfs/erofs"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: erofstar IN.tar OUT.erofs")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "erofstar:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	defer o.Close()
	w, err := erofs.NewWriter(o, erofs.Options{Time: 1700000000, Label: "root"})
	if err != nil {
		return err
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		hdr.Name = strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")
		if hdr.Name == "" {
			hdr.Name = "."
		}
		hdr.Linkname = strings.TrimPrefix(hdr.Linkname, "./")
		if hdr.Typeflag != tar.TypeLink && hdr.Typeflag != tar.TypeSymlink {
			hdr.Linkname = ""
		}
		if err := w.Add(hdr, tr); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return o.Sync()
}
