// Package azuretest runs Azurite's blob service (the Azure Storage emulator Microsoft publishes) on
// loopback for the tests of imgfab's Azure target, and reads page blobs back from it. Azurite is
// installed by testdata/azurite.sh (`make servers`) into ~/.cache/imgfab/azurite, or found at
// $AZURITE_BLOB. ARM (NewARM) stands in for the resource manager's Azure Compute Gallery calls,
// which have no emulator. For tests only.
package azuretest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

// Azurite's well-known development account and key (public, from its documentation; not a
// secret).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Bin finds azurite-blob: $AZURITE_BLOB, else the cache testdata/azurite.sh installs into. A
// missing Azurite fails the test (CI installs it).
func Bin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AZURITE_BLOB"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "imgfab", "azurite", "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("Azurite not installed: run `bash testdata/azurite.sh install` (or set AZURITE_BLOB to azurite-blob): %v", err)
	}
	return p
}

// Start starts azurite-blob on a free loopback port, with its data in a test temporary
// directory, stops it when the test ends, and returns the blob endpoint of Account.
func Start(t testing.TB) string {
	t.Helper()
	bin := Bin(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--location", t.TempDir(),
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting azurite-blob: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
			return fmt.Sprintf("http://127.0.0.1:%d/%s", port, Account)
		}
		if i == 300 {
			t.Fatalf("azurite-blob did not answer on port %d: %v\n%s", port, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Download reads the page blob at url (with Account's shared key).
func Download(t testing.TB, url string) []byte {
	t.Helper()
	cred, err := blob.NewSharedKeyCredential(Account, Key)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := pageblob.NewClientWithSharedKeyCredential(url, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pb.DownloadStream(context.Background(), nil)
	if err != nil {
		t.Fatalf("downloading %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
