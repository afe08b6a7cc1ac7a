package azure

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/imgfab/imgfab/publish"
	"github.com/imgfab/imgfab/publish/azure/azuretest"
)

const azTestGallery = "imgfab_gallery"

// azGalleryTarget is a push of the blob to Azurite and of the image to the ARM fake's gallery.
func azGalleryTarget(ep string, f *azuretest.ARM, name, version string) *Target {
	az := azAzuriteTarget(ep, name)
	az.SkipImage = false
	az.SubscriptionID, az.ResourceGroup, az.Location = f.Subscription, f.ResourceGroup, "westeurope"
	az.ARMEndpoint, az.Credential, az.Transport = f.URL, f.Credential(), f.Client()
	az.PollEvery = time.Millisecond
	az.Gallery, az.GalleryImageVersion = azTestGallery, version
	return az
}

func azArch(a publish.Artifact, arch string) publish.Artifact {
	a.Arch = arch
	return a
}

// An arm64 disk becomes a version of an Arm64, Hyper-V V2 image definition made from the blob; a
// rerun finds it; a second version reuses the definition.
func TestAzureGalleryArm64(t *testing.T) {
	ep := azuretest.Start(t)
	f := azuretest.NewARM(t)
	_, vhd := azTestDisk(t, 3<<20, 0, 2<<20)
	a := azArch(azOpen(t, vhd, "uefi"), "arm64")
	az := azGalleryTarget(ep, f, "arm", "1.0.0")
	res, err := az.Push(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantID := f.GalleryID(azTestGallery) + "/images/arm/versions/1.0.0"
	if res.ID != wantID || res.Existing || res.Name != azTestGallery+"/arm/1.0.0" {
		t.Errorf("result %+v, want ID %s", res, wantID)
	}
	for k, want := range map[string]string{"architecture": "Arm64", "hyperv_generation": "V2", "provisioning_state": "Succeeded",
		"gallery": azTestGallery, "gallery_image": "arm", "gallery_image_version": "1.0.0", "blob_url": ep + "/vhds/arm.vhd"} {
		if res.Details[k] != want {
			t.Errorf("details[%s] = %q, want %q", k, res.Details[k], want)
		}
	}
	if g := f.Gallery(azTestGallery); g == nil || g.Location != "westeurope" || g.ProvisioningState != "Succeeded" {
		t.Errorf("gallery %+v", g)
	}
	d := f.Definition(azTestGallery, "arm")
	if d == nil {
		t.Fatal("no image definition")
	}
	if want := (azuretest.Definition{Gallery: azTestGallery, Name: "arm", Location: "westeurope", OSType: "Linux", OSState: "Generalized",
		HyperVGeneration: "V2", Architecture: "Arm64", Publisher: "imgfab", Offer: "arm", SKU: "Arm64", ProvisioningState: "Succeeded"}); !reflect.DeepEqual(*d, want) {
		t.Errorf("image definition %+v, want %+v", *d, want)
	}
	v := f.Version(azTestGallery, "arm", "1.0.0")
	if v == nil {
		t.Fatal("no image version")
	}
	if v.SourceURI != ep+"/vhds/arm.vhd" || v.StorageAccountID != f.StorageAccountID(azuretest.Account) ||
		v.Tags[metaDone] != res.Details["content_sha256"] || len(v.Tags[metaDone]) != 64 || v.Location != "westeurope" {
		t.Errorf("image version %+v", *v)
	}
	azMustEqualFile(t, azuretest.Download(t, v.SourceURI), vhd)

	puts := f.Puts()
	if puts != 3 {
		t.Errorf("%d PUTs, want 3 (gallery, definition, version)", puts)
	}
	res2, err := az.Push(context.Background(), a, nil)
	if err != nil || !res2.Existing || res2.ID != wantID || f.Puts() != puts {
		t.Fatalf("rerun: %+v, %v, PUTs %d → %d", res2, err, puts, f.Puts())
	}

	// Another version of the same definition: only the version is PUT.
	res3, err := azGalleryTarget(ep, f, "arm", "1.0.1").Push(context.Background(), a, nil)
	if err != nil || res3.ID != f.GalleryID(azTestGallery)+"/images/arm/versions/1.0.1" || f.Puts() != puts+1 {
		t.Fatalf("second version: %+v, %v, PUTs %d → %d", res3, err, puts, f.Puts())
	}
}

// An amd64 disk pushed to a gallery gets an x64 definition of its generation.
func TestAzureGalleryAmd64(t *testing.T) {
	ep := azuretest.Start(t)
	f := azuretest.NewARM(t)
	_, vhd := azTestDisk(t, 3<<20, 0)
	for _, c := range []struct {
		name, arch, gen string
		modes           []string
	}{
		{"uefi", "amd64", "V2", []string{"uefi"}},
		{"bios", "", "V1", []string{"bios"}},
		{"kernel-name", "x86_64", "V2", []string{"uefi", "bios"}},
	} {
		res, err := azGalleryTarget(ep, f, c.name, "1.0.0").Push(context.Background(), azArch(azOpen(t, vhd, c.modes...), c.arch), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		d := f.Definition(azTestGallery, c.name)
		if d == nil || d.Architecture != "x64" || d.HyperVGeneration != c.gen || d.SKU != "x64" || res.Details["architecture"] != "x64" || res.Details["hyperv_generation"] != c.gen {
			t.Errorf("%s: definition %+v, details %v; want x64 %s", c.name, d, res.Details, c.gen)
		}
	}
}

// What cannot be an Azure image is refused before any request, naming both sides.
func TestAzureArchRefused(t *testing.T) {
	ep := azuretest.Start(t)
	f := azuretest.NewARM(t)
	_, vhd := azTestDisk(t, 3<<20, 0)
	for _, c := range []struct {
		name, arch, gen, gallery, version string
		modes                             []string
		want                              string
	}{
		{"no-gallery", "arm64", "", "", "", []string{"uefi"}, "azure: an arm64 image needs an Azure Compute Gallery (--gallery): a managed image has no architecture"},
		{"gen1", "arm64", "V1", azTestGallery, "1.0.0", []string{"uefi"}, "azure: --hyperv-generation V1 with architecture arm64: Azure's Arm64 VMs are generation V2 only"},
		{"bios", "arm64", "", azTestGallery, "1.0.0", []string{"bios"}, "azure: architecture arm64 boots UEFI only (generation V2), but the disk boots [bios]"},
		{"version", "arm64", "", azTestGallery, "1.0", []string{"uefi"}, `azure: gallery image version "1.0": want MAJOR.MINOR.PATCH`},
		{"huge-version", "amd64", "", azTestGallery, "1.0.4294967296", []string{"uefi"}, `azure: gallery image version "1.0.4294967296": 4294967296 is not a 32-bit number`},
		{"sparc", "sparc", "", azTestGallery, "1.0.0", []string{"uefi"}, `azure: architecture "sparc": want amd64 or arm64`},
	} {
		az := azGalleryTarget(ep, f, c.name, c.version)
		az.Gallery, az.HyperVGeneration = c.gallery, c.gen
		_, err := az.Push(context.Background(), azArch(azOpen(t, vhd, c.modes...), c.arch), nil)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("requests sent for refused pushes: %v", calls)
	}
	// The blob alone (no image) of an arm64 disk needs no gallery.
	az := azAzuriteTarget(ep, "blob-only")
	if _, err := az.Push(context.Background(), azArch(azOpen(t, vhd, "uefi"), "arm64"), nil); err != nil {
		t.Errorf("blob only: %v", err)
	}
	if g, err := HyperVGeneration(azArch(azOpen(t, vhd, "uefi", "bios"), "arm64"), "auto"); g != "V2" || err != nil {
		t.Errorf("HyperVGeneration(arm64, auto) = %q, %v; want V2", g, err)
	}
	if g, err := HyperVGeneration(azArch(azOpen(t, vhd, "uefi", "bios"), "arm64"), "V1"); g != "" || err == nil {
		t.Errorf("HyperVGeneration(arm64, V1) = %q, %v; want an error", g, err)
	}
}

// A definition of another architecture is not where an arm64 version goes: an error before the
// upload.
func TestAzureGalleryDefinitionOtherArch(t *testing.T) {
	ep := azuretest.Start(t)
	f := azuretest.NewARM(t)
	_, vhd := azTestDisk(t, 3<<20, 0)
	if _, err := azGalleryTarget(ep, f, "web", "1.0.0").Push(context.Background(), azArch(azOpen(t, vhd, "uefi"), "amd64"), nil); err != nil {
		t.Fatal(err)
	}
	puts := f.Puts()
	az := azGalleryTarget(ep, f, "web-arm", "2.0.0")
	az.GalleryImage = "web"
	_, err := az.Push(context.Background(), azArch(azOpen(t, vhd, "uefi"), "arm64"), nil)
	want := "azure: image definition web in gallery imgfab_gallery is Linux x64 (Hyper-V V2), this disk is Arm64 Linux (Hyper-V V2)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err %v, want %q", err, want)
	}
	if f.Puts() != puts || f.Version(azTestGallery, "web", "2.0.0") != nil {
		t.Errorf("PUTs %d → %d after the refusal", puts, f.Puts())
	}
	// The same content under an existing version of other content is refused too.
	_, other := azTestDisk(t, 3<<20, 1<<20)
	_, err = azGalleryTarget(ep, f, "web", "1.0.0").Push(context.Background(), azArch(azOpen(t, other, "uefi"), "amd64"), nil)
	if err == nil || !strings.Contains(err.Error(), "image version imgfab_gallery/web/1.0.0 already exists from other content") {
		t.Errorf("other content under an existing version: %v", err)
	}
}

// The ARM fake refuses what Azure refuses: an Arm64 definition of generation V1, an architecture
// by another name, a changed architecture.
func TestAzureFakeRejectsWrongDefinitions(t *testing.T) {
	f := azuretest.NewARM(t)
	ctx := context.Background()
	opts := &arm.ClientOptions{}
	opts.Transport = f.Client()
	opts.Cloud.Services = map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {Endpoint: f.URL, Audience: armAudience}}
	opts.Retry.MaxRetries = -1
	gc, err := armcompute.NewGalleriesClient(f.Subscription, f.Credential(), opts)
	if err != nil {
		t.Fatal(err)
	}
	loc := "westeurope"
	gp, err := gc.BeginCreateOrUpdate(ctx, f.ResourceGroup, "g", armcompute.Gallery{Location: &loc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gp.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	dc, err := armcompute.NewGalleryImagesClient(f.Subscription, f.Credential(), opts)
	if err != nil {
		t.Fatal(err)
	}
	put := func(name string, arch armcompute.Architecture, gen armcompute.HyperVGeneration) error {
		p, err := dc.BeginCreateOrUpdate(ctx, f.ResourceGroup, "g", name, armcompute.GalleryImage{Location: &loc, Properties: &armcompute.GalleryImageProperties{
			OSType: ptr(armcompute.OperatingSystemTypesLinux), OSState: ptr(armcompute.OperatingSystemStateTypesGeneralized),
			Architecture: &arch, HyperVGeneration: &gen,
			Identifier: &armcompute.GalleryImageIdentifier{Publisher: ptr("p"), Offer: ptr(name), SKU: ptr("s")}}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Millisecond})
		}
		return err
	}
	for _, c := range []struct {
		name    string
		arch    armcompute.Architecture
		gen     armcompute.HyperVGeneration
		problem string
	}{
		{"arm-gen1", "Arm64", "V1", "PUT image definition g/arm-gen1: architecture Arm64 with hyperVGeneration V1"},
		{"aarch64", "aarch64", "V2", `PUT image definition g/aarch64: architecture "aarch64"`},
		{"arm64-lower", "arm64", "V2", `PUT image definition g/arm64-lower: architecture "arm64"`},
	} {
		if err := put(c.name, c.arch, c.gen); err == nil || !strings.Contains(err.Error(), "InvalidParameter") {
			t.Errorf("%s: %v, want InvalidParameter", c.name, err)
		}
		if p := f.TakeProblems(); len(p) != 1 || !strings.HasPrefix(p[0], c.problem) {
			t.Errorf("%s: problems %q, want %q", c.name, p, c.problem)
		}
	}
	if err := put("d", "Arm64", "V2"); err != nil {
		t.Fatal(err)
	}
	if d := f.Definition("g", "d"); d == nil || d.Architecture != "Arm64" || d.HyperVGeneration != "V2" || d.ProvisioningState != "Succeeded" {
		t.Errorf("definition %+v", d)
	}
	if err := put("d", "x64", "V2"); err == nil || !strings.Contains(err.Error(), "PropertyChangeNotAllowed") {
		t.Errorf("changing the architecture: %v", err)
	}
	if p := f.TakeProblems(); len(p) != 1 || !strings.Contains(p[0], "galleryImage.properties.architecture") {
		t.Errorf("problems %q", p)
	}
}
