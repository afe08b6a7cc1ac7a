package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/pflag"

	"github.com/imgfab/imgfab/publish/azure"
)

func init() { pushTargets["azure"] = pushAzure }

const pushAzureHelp = `Usage: imgfab push azure [flags] DISK --resource-group G --storage-account A --name NAME

Upload DISK to Azure as a fixed VHD page blob (CONTAINER/NAME.vhd in the storage account) and
create the managed image NAME from it. A fixed VHD whose size is a whole number of MiB is uploaded
as it is; any other format is converted on the fly (rounded up to a whole MiB, plus the footer).
Pages are sent in parallel, up to 4 MiB per request with their MD5; ranges that are all zero are
not sent. A rerun sends nothing when the blob is complete, resumes an interrupted upload, and
reports an image of the same name made from the same disk as already there.

The Hyper-V generation follows the disk's boot modes: V2 (UEFI) when it boots UEFI, V1 when it
boots only BIOS; --hyperv-generation V1 picks BIOS for a hybrid disk.

Credentials: the blob uses the account key from $AZURE_STORAGE_KEY when it is set, else the
default Azure credential chain (environment, workload identity, managed identity, Azure CLI),
which also signs the image requests. Neither is printed or stored.

Examples:
  imgfab push azure disk.vhd --resource-group rg --storage-account st --name web-1 --location westeurope
  imgfab push azure disk.qcow2 -g rg -a st --name web-1 --location westeurope --json
  imgfab push azure disk.vhd --storage-account devstoreaccount1 --name x --upload-only \
      --blob-endpoint http://127.0.0.1:10000/devstoreaccount1

Flags:
`

func pushAzure(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := pflag.NewFlagSet("push azure", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	t := &azure.Target{}
	fl.StringVarP(&t.ResourceGroup, "resource-group", "g", "", "resource group of the image")
	fl.StringVarP(&t.StorageAccount, "storage-account", "a", "", "storage account for the VHD blob")
	fl.StringVar(&t.ImageName, "name", "", "image name (the blob is NAME.vhd)")
	fl.StringVar(&t.Container, "container", "vhds", "blob container (created when missing)")
	fl.StringVar(&t.Location, "location", "", "region of the image, e.g. westeurope")
	fl.StringVar(&t.SubscriptionID, "subscription", os.Getenv("AZURE_SUBSCRIPTION_ID"), "subscription id ($AZURE_SUBSCRIPTION_ID)")
	fl.StringVar(&t.HyperVGeneration, "hyperv-generation", "auto", "auto, V1 (BIOS) or V2 (UEFI)")
	via := fl.String("via", "image", "image: managed image from the page blob (disk: not supported yet)")
	fl.BoolVar(&t.SkipImage, "upload-only", false, "upload the page blob only, create no image")
	fl.StringVar(&t.Gallery, "gallery", "", "publish an image version in this Azure Compute Gallery instead of a managed image (needed for arm64: a managed image has no architecture)")
	fl.StringVar(&t.GalleryImage, "gallery-image", "", "the gallery's image definition (default --name; created with the disk's architecture and generation)")
	fl.StringVar(&t.GalleryImageVersion, "gallery-image-version", "", "the image version, MAJOR.MINOR.PATCH (required with --gallery)")
	fl.IntVar(&t.Workers, "parallel", 8, "parallel page uploads")
	fl.StringVar(&t.BlobEndpoint, "blob-endpoint", "", "blob service URL (default https://ACCOUNT.blob.core.windows.net/; Azurite: http://127.0.0.1:PORT/devstoreaccount1)")
	fl.StringVar(&t.ARMEndpoint, "arm-endpoint", "", "resource manager URL (default https://management.azure.com/)")
	asJSON := fl.Bool("json", false, "print the result as JSON")
	noCheck := fl.Bool("no-check", false, "push without running imgfab check for azure first")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return usagef("push azure: %v", err)
	}
	if *help {
		fmt.Fprint(stdout, pushAzureHelp+fl.FlagUsages())
		return errHelp
	}
	if fl.NArg() != 1 {
		return usagef("push azure: want one DISK, got %d arguments", fl.NArg())
	}
	if *via != "image" {
		return usagef("push azure: --via %q: only \"image\" is supported (the managed disk route is not implemented)", *via)
	}
	if t.Workers < 1 || t.Workers > 256 {
		return usagef("push azure: --parallel %d: want 1 to 256", t.Workers)
	}
	if t.ImageName == "" || t.StorageAccount == "" {
		return usagef("push azure: --name and --storage-account are required")
	}
	if !t.SkipImage && (t.ResourceGroup == "" || t.Location == "" || t.SubscriptionID == "") {
		return usagef("push azure: the image needs --resource-group, --location and --subscription (or $AZURE_SUBSCRIPTION_ID); --upload-only skips it")
	}
	t.StorageKey = os.Getenv("AZURE_STORAGE_KEY")
	if !t.SkipImage || t.StorageKey == "" {
		// With --arm-endpoint (a private cloud or a test server) the authority is not Azure's
		// public one: do not ask login.microsoftonline.com to validate it.
		opts := &azidentity.DefaultAzureCredentialOptions{DisableInstanceDiscovery: t.ARMEndpoint != ""}
		cred, err := azidentity.NewDefaultAzureCredential(opts)
		if err != nil {
			return fmt.Errorf("azure: credentials: %s", redactEnv(err.Error(), azureSecretEnv...))
		}
		t.Credential = cred
	}
	return pushDisk(ctx, t, fl.Arg(0), stdout, stderr, *asJSON, *noCheck, azureSecretEnv...)
}

// azureSecretEnv are the environment variables whose values never appear in imgfab's output.
var azureSecretEnv = []string{"AZURE_STORAGE_KEY", "AZURE_CLIENT_SECRET", "AZURE_STORAGE_CONNECTION_STRING"}
