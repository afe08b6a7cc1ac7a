package azure

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/imgfab/imgfab/publish"
)

// galleryPush is a push to an Azure Compute Gallery: the blob becomes a version of an image
// definition that carries the disk's architecture and Hyper-V generation.
type galleryPush struct {
	az               *Target
	image, version   string // the definition and the version
	arch             armcompute.Architecture
	gen              armcompute.HyperVGeneration
	storageAccountID string
}

var versionNameRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// galleryArch is the architecture of an image definition for a publish architecture (AMD64 or
// ARM64): "x64" or "Arm64".
func galleryArch(arch string) string {
	if arch == publish.ARM64 {
		return string(armcompute.ArchitectureArm64)
	}
	return string(armcompute.ArchitectureX64)
}

// newGalleryPush checks the gallery fields of a push of a disk of architecture arch (AMD64 or
// ARM64) and Hyper-V generation gen.
func (az *Target) newGalleryPush(arch string, gen armcompute.HyperVGenerationTypes) (*galleryPush, error) {
	g := &galleryPush{az: az, image: az.GalleryImage, version: az.GalleryImageVersion,
		arch: armcompute.Architecture(galleryArch(arch)), gen: armcompute.HyperVGeneration(gen), storageAccountID: az.StorageAccountID}
	if g.image == "" {
		g.image = az.ImageName
	}
	if !versionNameRE.MatchString(g.version) {
		return nil, fmt.Errorf("azure: gallery image version %q: want MAJOR.MINOR.PATCH (--gallery-image-version)", g.version)
	}
	for _, n := range strings.Split(g.version, ".") {
		if _, err := strconv.ParseInt(n, 10, 32); err != nil {
			return nil, fmt.Errorf("azure: gallery image version %q: %s is not a 32-bit number", g.version, n)
		}
	}
	if g.storageAccountID == "" {
		g.storageAccountID = "/subscriptions/" + az.SubscriptionID + "/resourceGroups/" + az.ResourceGroup +
			"/providers/Microsoft.Storage/storageAccounts/" + az.StorageAccount
	}
	return g, nil
}

// where names the version for messages: GALLERY/IMAGE/VERSION.
func (g *galleryPush) where() string { return g.az.Gallery + "/" + g.image + "/" + g.version }

// push looks for the definition and the version, uploads the blob, then creates what is missing:
// the gallery, the definition, the version. A version already made from the same content is
// returned as Existing; one made from other content, or a definition of another architecture,
// Hyper-V generation or OS, is an error.
func (g *galleryPush) push(ctx context.Context, plan *vhdPlan, res publish.Result, p publish.Progress) (publish.Result, error) {
	az := g.az
	opts := az.armOptions()
	defs, err := armcompute.NewGalleryImagesClient(az.SubscriptionID, az.Credential, opts)
	if err != nil {
		return res, az.err("gallery image client", err)
	}
	versions, err := armcompute.NewGalleryImageVersionsClient(az.SubscriptionID, az.Credential, opts)
	if err != nil {
		return res, az.err("gallery image version client", err)
	}
	res.Name = g.where()
	res.Details["gallery"] = az.Gallery
	res.Details["gallery_image"] = g.image
	res.Details["gallery_image_version"] = g.version
	res.Details["architecture"] = string(g.arch)

	// 1. The definition, if there is one, must fit the disk; a version of it may be there already.
	haveDef := false
	got, err := defs.Get(ctx, az.ResourceGroup, az.Gallery, g.image, nil)
	switch {
	case err == nil:
		if err := g.fits(got.GalleryImage); err != nil {
			return res, err
		}
		haveDef = true
	case !isStatus(err, http.StatusNotFound):
		return res, az.err(fmt.Sprintf("looking up image definition %s in gallery %s", g.image, az.Gallery), err)
	}
	if haveDef {
		v, err := versions.Get(ctx, az.ResourceGroup, az.Gallery, g.image, g.version, nil)
		if err == nil {
			return g.existing(res, v.GalleryImageVersion, plan.hash)
		}
		if !isStatus(err, http.StatusNotFound) {
			return res, az.err("looking up image version "+g.where(), err)
		}
	}

	// 2. The blob.
	blobURL, err := az.upload(ctx, plan, &res, p)
	if err != nil {
		return res, err
	}
	res.Details["blob_url"] = blobURL

	// 3. The gallery and the definition, when missing.
	if !haveDef {
		if err := g.createGallery(ctx, p); err != nil {
			return res, err
		}
		if err := g.createDefinition(ctx, defs, p); err != nil {
			return res, err
		}
	}

	// 4. The version.
	p.Emit(publish.Event{Target: targetName, Step: "image", Note: "gallery image version " + g.where()})
	poller, err := versions.BeginCreateOrUpdate(ctx, az.ResourceGroup, az.Gallery, g.image, g.version, armcompute.GalleryImageVersion{
		Location: &az.Location,
		Tags:     map[string]*string{metaDone: &plan.hash},
		Properties: &armcompute.GalleryImageVersionProperties{
			StorageProfile: &armcompute.GalleryImageVersionStorageProfile{
				OSDiskImage: &armcompute.GalleryOSDiskImage{
					Source: &armcompute.GalleryDiskImageSource{URI: &blobURL, StorageAccountID: &g.storageAccountID},
				},
			},
		},
	}, nil)
	if err != nil {
		return res, az.err("creating image version "+g.where(), err)
	}
	p.Emit(publish.Event{Target: targetName, Step: "wait", Note: "image version " + g.where()})
	done, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: az.pollEvery()})
	if err != nil {
		return res, az.err("waiting for image version "+g.where(), err)
	}
	if done.ID != nil {
		res.ID = *done.ID
	}
	if done.Properties != nil && done.Properties.ProvisioningState != nil {
		res.Details["provisioning_state"] = string(*done.Properties.ProvisioningState)
	}
	return res, nil
}

// fits checks that an existing image definition can hold the disk: same architecture (absent is
// x64), Hyper-V generation (absent is V1), Linux.
func (g *galleryPush) fits(d armcompute.GalleryImage) error {
	arch, gen, osType := armcompute.ArchitectureX64, armcompute.HyperVGenerationV1, armcompute.OperatingSystemTypes("")
	if pr := d.Properties; pr != nil {
		if pr.Architecture != nil {
			arch = *pr.Architecture
		}
		if pr.HyperVGeneration != nil {
			gen = *pr.HyperVGeneration
		}
		if pr.OSType != nil {
			osType = *pr.OSType
		}
	}
	if !strings.EqualFold(string(arch), string(g.arch)) || !strings.EqualFold(string(gen), string(g.gen)) || osType != armcompute.OperatingSystemTypesLinux {
		return fmt.Errorf("azure: image definition %s in gallery %s is %s %s (Hyper-V %s), this disk is %s Linux (Hyper-V %s): choose another --gallery-image",
			g.image, g.az.Gallery, osType, arch, gen, g.arch, g.gen)
	}
	return nil
}

// existing reports a version found: Existing when it was made from the same content.
func (g *galleryPush) existing(res publish.Result, v armcompute.GalleryImageVersion, hash string) (publish.Result, error) {
	tag := ""
	if t := v.Tags[metaDone]; t != nil {
		tag = *t
	}
	if tag != hash {
		return res, fmt.Errorf("azure: image version %s already exists from other content (tag %s=%q, this disk %s): choose another --gallery-image-version",
			g.where(), metaDone, tag, hash)
	}
	if v.ID != nil {
		res.ID = *v.ID
	}
	res.Existing = true
	return res, nil
}

// createGallery makes the gallery unless it exists.
func (g *galleryPush) createGallery(ctx context.Context, p publish.Progress) error {
	az := g.az
	gc, err := armcompute.NewGalleriesClient(az.SubscriptionID, az.Credential, az.armOptions())
	if err != nil {
		return az.err("gallery client", err)
	}
	_, err = gc.Get(ctx, az.ResourceGroup, az.Gallery, nil)
	if err == nil {
		return nil
	}
	if !isStatus(err, http.StatusNotFound) {
		return az.err("looking up gallery "+az.Gallery, err)
	}
	p.Emit(publish.Event{Target: targetName, Step: "image", Note: "gallery " + az.Gallery})
	poller, err := gc.BeginCreateOrUpdate(ctx, az.ResourceGroup, az.Gallery, armcompute.Gallery{Location: &az.Location}, nil)
	if err != nil {
		return az.err("creating gallery "+az.Gallery, err)
	}
	if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: az.pollEvery()}); err != nil {
		return az.err("waiting for gallery "+az.Gallery, err)
	}
	return nil
}

// createDefinition makes the image definition: Linux, generalized, the disk's architecture and
// Hyper-V generation.
func (g *galleryPush) createDefinition(ctx context.Context, defs *armcompute.GalleryImagesClient, p publish.Progress) error {
	az := g.az
	pub, offer, sku := az.Publisher, az.Offer, az.SKU
	if pub == "" {
		pub = "imgfab"
	}
	if offer == "" {
		offer = g.image
	}
	if sku == "" {
		sku = string(g.arch)
	}
	p.Emit(publish.Event{Target: targetName, Step: "image", Note: "gallery image definition " + az.Gallery + "/" + g.image})
	poller, err := defs.BeginCreateOrUpdate(ctx, az.ResourceGroup, az.Gallery, g.image, armcompute.GalleryImage{
		Location: &az.Location,
		Properties: &armcompute.GalleryImageProperties{
			OSType:           ptr(armcompute.OperatingSystemTypesLinux),
			OSState:          ptr(armcompute.OperatingSystemStateTypesGeneralized),
			HyperVGeneration: &g.gen,
			Architecture:     &g.arch,
			Identifier:       &armcompute.GalleryImageIdentifier{Publisher: &pub, Offer: &offer, SKU: &sku},
		},
	}, nil)
	if err != nil {
		return az.err(fmt.Sprintf("creating image definition %s/%s (%s, Hyper-V %s)", az.Gallery, g.image, g.arch, g.gen), err)
	}
	if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: az.pollEvery()}); err != nil {
		return az.err("waiting for image definition "+az.Gallery+"/"+g.image, err)
	}
	return nil
}
