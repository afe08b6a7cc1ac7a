// Command veritytree writes the dm-verity hash area of a data file with package verity, as
// `veritysetup format DATA HASH` does (testdata/bench-erofs.sh times the two on the same image).
//
//	go run ./testdata/veritytree DATA HASH
package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/imgfab/imgfab/verity"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: veritytree DATA HASH")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "veritytree:", err)
		os.Exit(1)
	}
}

func run(dataPath, hashPath string) error {
	data, err := os.Open(dataPath)
	if err != nil {
		return err
	}
	defer data.Close()
	fi, err := data.Stat()
	if err != nil {
		return err
	}
	h, err := os.Create(hashPath)
	if err != nil {
		return err
	}
	defer h.Close()
	t, err := verity.Write(context.Background(), data, fi.Size(), h, verity.Params{Salt: []byte("imgfab")})
	if err != nil {
		return err
	}
	if err := h.Sync(); err != nil {
		return err
	}
	fmt.Println(hex.EncodeToString(t.RootHash[:]))
	return nil
}
