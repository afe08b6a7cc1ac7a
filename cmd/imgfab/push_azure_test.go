package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/azure"
	"github.com/imgfab/imgfab/publish/azure/azuretest"
)

func pushAzureJSON(t *testing.T, env []string, args ...string) publish.Result {
	t.Helper()
	r := runImgfab(t, env, append([]string{"push", "azure", "--no-check", "--json", "--upload-only", "--storage-account", azuretest.Account}, args...)...)
	if r.code != 0 {
		t.Fatalf("imgfab push azure %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	var res publish.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	return res
}

// TestPushAzureDemo uploads the demo's fixed VHD and its qcow2 (converted on the fly) to Azurite
// with the CLI and reads the blobs back.
func TestPushAzureDemo(t *testing.T) {
	src := "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
	dir := t.TempDir()
	vhd, qcow := filepath.Join(dir, "demo.vhd"), filepath.Join(dir, "demo.qcow2")
	build(t, src, "-o", vhd)
	build(t, src, "-o", qcow)
	ep := azuretest.Start(t)
	env := []string{"AZURE_STORAGE_KEY=" + azuretest.Key}

	res := pushAzureJSON(t, env, vhd, "--name", "demo", "--blob-endpoint", ep)
	want, err := os.ReadFile(vhd)
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "azure" || res.ID != ep+"/vhds/demo.vhd" || res.Details["converted_to_vhd"] != "false" {
		t.Fatalf("result %+v", res)
	}
	if !bytes.Equal(azuretest.Download(t, res.ID), want) {
		t.Fatal("the blob differs from the VHD")
	}
	sent, _ := strconv.ParseInt(res.Details["bytes_sent"], 10, 64)
	zero, _ := strconv.ParseInt(res.Details["zero_bytes_skipped"], 10, 64)
	if zero == 0 || sent+zero != int64(len(want)) {
		t.Fatalf("sent %d + zero %d != %d: %v", sent, zero, len(want), res.Details)
	}
	t.Logf("demo VHD %d MiB: %d bytes sent, %s zero ranges (%d MiB) skipped", len(want)>>20, sent, res.Details["zero_ranges_skipped"], zero>>20)

	res = pushAzureJSON(t, env, vhd, "--name", "demo", "--blob-endpoint", ep)
	if res.Details["bytes_sent"] != "0" || res.Details["blob_existing"] != "true" {
		t.Fatalf("rerun sent data: %v", res.Details)
	}

	// qcow2 → VHD on the fly: the same guest bytes; the footer is a valid fixed VHD footer.
	res = pushAzureJSON(t, env, qcow, "--name", "demo-qcow", "--blob-endpoint", ep)
	got := azuretest.Download(t, res.ID)
	if res.Details["converted_to_vhd"] != "true" || len(got) != len(want) || !bytes.Equal(got[:len(got)-512], want[:len(want)-512]) {
		t.Fatalf("converted blob: %d bytes, want %d with the same guest bytes: %v", len(got), len(want), res.Details)
	}
	if f := got[len(got)-512:]; string(f[:8]) != "conectix" || f[63] != 2 || !bytes.Equal(f[40:56], want[len(want)-512+40:len(want)-512+56]) {
		t.Fatalf("footer %x", f[:64])
	}
}

// TestPushAzureGeneration: the Hyper-V generation from the boot modes inspect finds in real
// builds: the UEFI demo → V2, the demo-bios built with --boot bios → V1 (and V2 refused).
func TestPushAzureGeneration(t *testing.T) {
	dir := t.TempDir()
	uefi, bios := filepath.Join(dir, "uefi.vhd"), filepath.Join(dir, "bios.vhd")
	build(t, "oci:"+fixture(t, "demo/oci", "mkdemo.sh")+":demo", "-o", uefi)
	build(t, "oci:"+fixture(t, "demo-bios/oci", "mkdemo-bios.sh")+":demo", "--boot", "bios", "-o", bios)
	for _, c := range []struct{ path, flag, want string }{
		{uefi, "auto", "V2"}, {bios, "auto", "V1"}, {bios, "V2", ""}, {uefi, "V1", ""},
	} {
		a, done, err := openArtifact(context.Background(), c.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := azure.HyperVGeneration(a, c.flag)
		done()
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%s (boot modes %v) with %s: %q, %v; want %q", filepath.Base(c.path), a.BootModes, c.flag, got, err, c.want)
		}
	}
}

// TestPushAzureNoSecret: recognisable secrets in AZURE_STORAGE_KEY and AZURE_CLIENT_SECRET appear
// in no output, when the key is wrong (Azurite answers 403) and when the token request fails
// (the authority host is a closed loopback port).
func TestPushAzureNoSecret(t *testing.T) {
	src := "oci:" + fixture(t, "demo/oci", "mkdemo.sh") + ":demo"
	vhd := filepath.Join(t.TempDir(), "demo.vhd")
	build(t, src, "-o", vhd)
	ep := azuretest.Start(t)
	key := "SU1HRkFCLVNFQ1JFVC1LRVktZG8tbm90LXByaW50LTc3Nzc3Nzc3" // base64, so the SDK takes it
	clientSecret := "IMGFAB-CLIENT-SECRET-do-not-print-8888"
	env := []string{"AZURE_STORAGE_KEY=" + key, "AZURE_CLIENT_SECRET=" + clientSecret, "AZURE_CLIENT_ID=00000000-0000-0000-0000-000000000001",
		"AZURE_TENANT_ID=00000000-0000-0000-0000-000000000002", "AZURE_AUTHORITY_HOST=https://127.0.0.1:1/"}
	for _, args := range [][]string{
		{"--upload-only"},
		{"--resource-group", "rg", "--location", "westeurope", "--subscription", "sub", "--arm-endpoint", "https://127.0.0.1:1/"},
	} {
		r := runImgfab(t, env, append([]string{"push", "azure", vhd, "--no-check", "--storage-account", azuretest.Account, "--name", "s", "--blob-endpoint", ep, "--json"}, args...)...)
		if r.code == 0 {
			t.Fatalf("push with a wrong key succeeded: %s", r.stdout)
		}
		out := r.stdout + r.stderr
		for _, s := range []string{key, clientSecret, key[:16], clientSecret[:16]} {
			if strings.Contains(out, s) {
				t.Fatalf("secret %q in output:\n%s", s, out)
			}
		}
		t.Logf("%v: exit %d: %s", args, r.code, strings.TrimSpace(r.stderr))
	}
}
