// Command setxattr sets one extended attribute on a file without following symlinks, so fixture
// scripts need no attr/libcap tools:
//
//	go run ./testdata/setxattr FILE NAME HEXVALUE
//
// Example: security.capability granting cap_net_raw (bit 13) permitted+effective, VFS caps v2:
//
//	go run ./testdata/setxattr f security.capability 0100000200200000000000000000000000000000
package main

import (
	"encoding/hex"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: setxattr FILE NAME HEXVALUE")
		os.Exit(2)
	}
	v, err := hex.DecodeString(os.Args[3])
	if err != nil {
		fmt.Fprintf(os.Stderr, "setxattr: value of %s: %v\n", os.Args[2], err)
		os.Exit(2)
	}
	if err := unix.Lsetxattr(os.Args[1], os.Args[2], v, 0); err != nil {
		fmt.Fprintf(os.Stderr, "setxattr: %s on %s: %v\n", os.Args[2], os.Args[1], err)
		os.Exit(1)
	}
}
