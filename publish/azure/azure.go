package azure

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/imgfab/imgfab/diskfmt"
	"github.com/imgfab/imgfab/publish"
)

// Target publishes a disk as an Azure managed image: the disk as a fixed VHD (converted on the fly
// when it is in another format) is uploaded to a page blob, 512-aligned puts of at most 4 MiB in
// parallel, ranges that are all zero not sent; then a managed image is created from the blob, or
// with Gallery an image version in an Azure Compute Gallery (the only kind of image that carries an
// architecture: an arm64 disk needs it).
//
// The upload is idempotent and resumable: the blob carries metadata imgfab_pending_sha256 = the
// content hash from its creation and imgfab_sha256 = the content hash once every page is there
// (checked with Get Page Ranges). A rerun finds a complete blob and sends nothing; it finds an
// interrupted one of the same content and sends only the ranges Get Page Ranges lacks; a blob of
// other content is recreated. The image carries the tag imgfab_sha256 too, so a rerun finds it and
// reports Existing, and a different disk under the same image name is an error.
//
// The content hash ("content_sha256" in Result.Details) is SHA-256 over "imgfab-vhd-pages-v1",
// the VHD size and, for each 64 KiB block of the VHD that is not all zero, its offset, its length
// and its bytes: it identifies the VHD bytes without hashing its zeros.
//
// Metadata names are imgfab_sha256 and imgfab_pending_sha256, with '_' and not '-', since Azure
// metadata names must be C# identifiers.
type Target struct {
	SubscriptionID string // for the image; AZURE_SUBSCRIPTION_ID by default (the CLI reads it)
	ResourceGroup  string
	StorageAccount string
	Container      string // default "vhds"
	ImageName      string // image name; the blob is IMAGENAME.vhd
	Location       string // the image's region; required unless SkipImage
	// HyperVGeneration is "auto" (default: V2 when the disk boots UEFI, V1 when it boots only
	// BIOS; always V2 for arm64), "V1" or "V2" (V1 with arm64 is an error).
	HyperVGeneration string
	SkipImage        bool // upload the blob only

	// Gallery, when set, publishes an image version in this Azure Compute Gallery (in
	// ResourceGroup; created in Location when missing) instead of a managed image: the image
	// definition GalleryImage (default ImageName; created when missing, with the disk's
	// architecture, x64 or Arm64, and Hyper-V generation, OS Linux, generalized) gets the version
	// GalleryImageVersion, made from the blob. An arm64 disk needs it: a managed image has no
	// architecture (Azure takes it for x64), a gallery image definition does.
	Gallery             string
	GalleryImage        string
	GalleryImageVersion string // MAJOR.MINOR.PATCH, required with Gallery
	// Publisher, Offer and SKU identify an image definition the push creates (they must be
	// unique in the gallery); the defaults are "imgfab", the definition's name and the
	// architecture ("x64" or "Arm64").
	Publisher, Offer, SKU string
	// StorageAccountID is the storage account's resource id, which an image version made from a
	// blob names; default the account StorageAccount in SubscriptionID and ResourceGroup.
	StorageAccountID string

	// BlobEndpoint is the account's blob service URL; default https://ACCOUNT.blob.core.windows.net/.
	// Azurite: http://127.0.0.1:PORT/devstoreaccount1.
	BlobEndpoint string
	// ARMEndpoint is the resource manager URL; default https://management.azure.com/.
	ARMEndpoint string
	// StorageKey is the account's shared key (AZURE_STORAGE_KEY); empty means Credential is used
	// for the blob too.
	StorageKey string
	// Credential authenticates ARM (and the blob without StorageKey); the CLI passes
	// azidentity.NewDefaultAzureCredential.
	Credential azcore.TokenCredential
	// Transport, when set, carries every request (tests).
	Transport policy.Transporter

	Workers   int   // parallel page uploads; default 8
	PageChunk int64 // the largest Put Page, a multiple of 64 KiB up to 4 MiB; default 4 MiB
	Retries   int   // attempts per request after the first (SDK retry policy); default 5
	// PollEvery is how often the image operation is polled when the server sends no
	// Retry-After; default 5 s.
	PollEvery time.Duration
}

func (az *Target) pollEvery() time.Duration {
	if az.PollEvery > 0 {
		return az.PollEvery
	}
	return 5 * time.Second
}

const (
	targetName     = "azure"
	hashBlock      = 64 << 10 // zero detection and content hash granularity
	maxPage        = 4 << 20  // the largest Put Page
	mib            = 1 << 20
	footerSize     = 512
	metaDone       = "imgfab_sha256"
	metaPending    = "imgfab_pending_sha256"
	defaultBlob    = "https://%s.blob.core.windows.net/"
	defaultARM     = "https://management.azure.com/"
	armAudience    = "https://management.core.windows.net/"
	defaultWorkers = 8
)

// Name returns "azure".
func (*Target) Name() string { return targetName }

var _ publish.Target = (*Target)(nil)

// pageRange is a range of the VHD to put: [Off, Off+Len), 512-aligned, at most PageChunk long.
type pageRange struct{ Off, Len int64 }

// vhdPlan is what the pre-pass found: the VHD size, its content hash and the ranges with data.
type vhdPlan struct {
	src        io.ReaderAt
	size       int64
	hash       string
	ranges     []pageRange
	dataBytes  int64
	zeroRanges int // maximal runs of zero blocks that are not sent
	converted  bool
	close      func()
}

func (az *Target) secrets() []string {
	return []string{az.StorageKey, os.Getenv("AZURE_CLIENT_SECRET")}
}

func (az *Target) err(step string, err error) error {
	return publish.NewStepError(targetName, step, err, az.secrets()...)
}

// Push uploads the artifact and creates the image.
func (az *Target) Push(ctx context.Context, a publish.Artifact, p publish.Progress) (publish.Result, error) {
	if az.ImageName == "" || az.StorageAccount == "" {
		return publish.Result{}, fmt.Errorf("azure: --name and --storage-account are required")
	}
	if !az.SkipImage && (az.ResourceGroup == "" || az.SubscriptionID == "" || az.Location == "") {
		return publish.Result{}, fmt.Errorf("azure: creating the image needs --resource-group, --subscription (or AZURE_SUBSCRIPTION_ID) and --location")
	}
	gen, err := az.generation(a)
	if err != nil {
		return publish.Result{}, err
	}
	arch, _ := a.Architecture() // checked by generation
	if !az.SkipImage && az.Gallery == "" && arch == publish.ARM64 {
		return publish.Result{}, fmt.Errorf("azure: an arm64 image needs an Azure Compute Gallery (--gallery): a managed image has no architecture, Azure would take it for x64")
	}
	var gal *galleryPush
	if !az.SkipImage && az.Gallery != "" {
		if gal, err = az.newGalleryPush(arch, gen); err != nil {
			return publish.Result{}, err
		}
	}
	plan, err := planFor(ctx, a, az.chunk(), p)
	if err != nil {
		return publish.Result{}, az.err("reading the disk", err)
	}
	defer plan.close()

	res := publish.Result{Target: targetName, Name: az.ImageName, Region: az.Location, Details: map[string]string{
		"content_sha256":      plan.hash,
		"vhd_bytes":           strconv.FormatInt(plan.size, 10),
		"data_ranges":         strconv.Itoa(len(plan.ranges)),
		"zero_ranges_skipped": strconv.Itoa(plan.zeroRanges),
		"zero_bytes_skipped":  strconv.FormatInt(plan.size-plan.dataBytes, 10),
		"converted_to_vhd":    strconv.FormatBool(plan.converted),
	}}
	if !az.SkipImage {
		res.Details["hyperv_generation"] = string(gen)
	}

	if gal != nil {
		return gal.push(ctx, plan, res, p)
	}

	var images *armcompute.ImagesClient
	if !az.SkipImage {
		images, err = armcompute.NewImagesClient(az.SubscriptionID, az.Credential, az.armOptions())
		if err != nil {
			return res, az.err("image client", err)
		}
		got, err := images.Get(ctx, az.ResourceGroup, az.ImageName, nil)
		if err == nil {
			return az.existingImage(res, got.Image, plan.hash)
		}
		if !isStatus(err, http.StatusNotFound) {
			return res, az.err(fmt.Sprintf("looking up image %s in resource group %s", az.ImageName, az.ResourceGroup), err)
		}
	}

	blobURL, err := az.upload(ctx, plan, &res, p)
	if err != nil {
		return res, err
	}
	res.Details["blob_url"] = blobURL
	if az.SkipImage {
		res.ID = blobURL
		return res, nil
	}

	return az.createImage(ctx, images, res, gen, plan.hash, blobURL, p)
}

// createImage makes the managed image from the blob, waits for it and completes res with its id.
func (az *Target) createImage(ctx context.Context, images *armcompute.ImagesClient, res publish.Result,
	gen armcompute.HyperVGenerationTypes, hash, blobURL string, p publish.Progress) (publish.Result, error) {
	p.Emit(publish.Event{Target: targetName, Step: "image", Note: az.ImageName})
	img := armcompute.Image{
		Location: &az.Location,
		Tags:     map[string]*string{metaDone: &hash},
		Properties: &armcompute.ImageProperties{
			HyperVGeneration: &gen,
			StorageProfile: &armcompute.ImageStorageProfile{
				OSDisk: &armcompute.ImageOSDisk{
					OSType:  ptr(armcompute.OperatingSystemTypesLinux),
					OSState: ptr(armcompute.OperatingSystemStateTypesGeneralized),
					BlobURI: &blobURL,
				},
			},
		},
	}
	poller, err := images.BeginCreateOrUpdate(ctx, az.ResourceGroup, az.ImageName, img, nil)
	if err != nil {
		return res, az.err("creating image "+az.ImageName, err)
	}
	p.Emit(publish.Event{Target: targetName, Step: "wait", Note: "image " + az.ImageName})
	done, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: az.pollEvery()})
	if err != nil {
		return res, az.err("waiting for image "+az.ImageName, err)
	}
	if done.ID != nil {
		res.ID = *done.ID
	}
	if done.Properties != nil && done.Properties.ProvisioningState != nil {
		res.Details["provisioning_state"] = *done.Properties.ProvisioningState
	}
	return res, nil
}

// existingImage reports an image found by name: Existing when it was made from the same content.
func (az *Target) existingImage(res publish.Result, img armcompute.Image, hash string) (publish.Result, error) {
	tag := ""
	if v := img.Tags[metaDone]; v != nil {
		tag = *v
	}
	if tag != hash {
		return res, fmt.Errorf("azure: image %s already exists in resource group %s from other content (tag %s=%q, this disk %s): delete it or choose another --name",
			az.ImageName, az.ResourceGroup, metaDone, tag, hash)
	}
	if img.ID != nil {
		res.ID = *img.ID
	}
	res.Existing = true
	return res, nil
}

// generation picks the Hyper-V generation: Gen2 boots UEFI, Gen1 BIOS; an arm64 disk is Gen2
// only (Azure's Arm64 VMs boot UEFI).
func (az *Target) generation(a publish.Artifact) (armcompute.HyperVGenerationTypes, error) {
	arch, err := a.Architecture()
	if err != nil {
		return "", fmt.Errorf("azure: %w", err)
	}
	uefi, bios := a.Boots("uefi"), a.Boots("bios")
	if arch == publish.ARM64 {
		switch strings.ToUpper(az.HyperVGeneration) {
		case "", "AUTO", "V2":
		case "V1":
			return "", fmt.Errorf("azure: --hyperv-generation V1 with architecture arm64: Azure's Arm64 VMs are generation V2 only")
		default:
			return "", fmt.Errorf("azure: --hyperv-generation %q: want auto, V1 or V2", az.HyperVGeneration)
		}
		if len(a.BootModes) > 0 && !uefi {
			return "", fmt.Errorf("azure: architecture arm64 boots UEFI only (generation V2), but the disk boots %v", a.BootModes)
		}
		return armcompute.HyperVGenerationTypesV2, nil
	}
	switch strings.ToUpper(az.HyperVGeneration) {
	case "", "AUTO":
		switch {
		case uefi:
			return armcompute.HyperVGenerationTypesV2, nil
		case bios:
			return armcompute.HyperVGenerationTypesV1, nil
		}
		if az.SkipImage {
			return "", nil
		}
		return "", fmt.Errorf("azure: the disk's boot mode is unknown (boot modes %v): pass --hyperv-generation V1 (BIOS) or V2 (UEFI)", a.BootModes)
	case "V1":
		if uefi && !bios {
			return "", fmt.Errorf("azure: --hyperv-generation V1 boots BIOS, but the disk boots only %v", a.BootModes)
		}
		return armcompute.HyperVGenerationTypesV1, nil
	case "V2":
		if bios && !uefi {
			return "", fmt.Errorf("azure: --hyperv-generation V2 boots UEFI, but the disk boots only %v", a.BootModes)
		}
		return armcompute.HyperVGenerationTypesV2, nil
	}
	return "", fmt.Errorf("azure: --hyperv-generation %q: want auto, V1 or V2", az.HyperVGeneration)
}

func (az *Target) chunk() int64 {
	c := az.PageChunk
	if c <= 0 || c > maxPage {
		c = maxPage
	}
	return max(c/hashBlock*hashBlock, hashBlock)
}

func (az *Target) clientOptions() azcore.ClientOptions {
	retries := az.Retries
	if retries == 0 {
		retries = 5
	}
	o := azcore.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: int32(retries), RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 5 * time.Second,
			StatusCodes: []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
				http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}},
		Logging: policy.LogOptions{IncludeBody: false},
	}
	if az.Transport != nil {
		o.Transport = az.Transport
	}
	return o
}

func (az *Target) armOptions() *arm.ClientOptions {
	o := az.clientOptions()
	ep := az.ARMEndpoint
	if ep == "" {
		ep = defaultARM
	}
	o.Cloud = cloud.Configuration{
		ActiveDirectoryAuthorityHost: cloud.AzurePublic.ActiveDirectoryAuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: ep, Audience: armAudience},
		},
	}
	return &arm.ClientOptions{ClientOptions: o}
}

// blobURL is the page blob's URL (without credentials).
func (az *Target) blobURL() string {
	ep := az.BlobEndpoint
	if ep == "" {
		ep = fmt.Sprintf(defaultBlob, az.StorageAccount)
	}
	return strings.TrimSuffix(ep, "/") + "/" + az.container() + "/" + az.ImageName + ".vhd"
}

func (az *Target) container() string {
	if az.Container == "" {
		return "vhds"
	}
	return az.Container
}

func (az *Target) pageClient(url string) (*pageblob.Client, error) {
	o := &pageblob.ClientOptions{ClientOptions: az.clientOptions()}
	if az.StorageKey != "" {
		cred, err := blob.NewSharedKeyCredential(az.StorageAccount, az.StorageKey)
		if err != nil {
			return nil, errors.New("the storage key is not valid base64") // never the key's text
		}
		return pageblob.NewClientWithSharedKeyCredential(url, cred, o)
	}
	if az.Credential == nil {
		return nil, errors.New("no credential: set AZURE_STORAGE_KEY or sign in (azidentity default chain)")
	}
	return pageblob.NewClient(url, az.Credential, o)
}

func (az *Target) containerClient() (*container.Client, error) {
	url := strings.TrimSuffix(az.blobURL(), "/"+az.ImageName+".vhd")
	o := &container.ClientOptions{ClientOptions: az.clientOptions()}
	if az.StorageKey != "" {
		cred, err := blob.NewSharedKeyCredential(az.StorageAccount, az.StorageKey)
		if err != nil {
			return nil, errors.New("the storage key is not valid base64")
		}
		return container.NewClientWithSharedKeyCredential(url, cred, o)
	}
	return container.NewClient(url, az.Credential, o)
}

// createContainer creates the storage container the blob goes in; one already there is fine.
func (az *Target) createContainer(ctx context.Context) error {
	cc, err := az.containerClient()
	if err == nil {
		_, err = cc.Create(ctx, nil)
	}
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return az.err("creating container "+az.container(), err)
	}
	return nil
}

// upload makes the page blob hold the plan's VHD and returns its URL.
func (az *Target) upload(ctx context.Context, plan *vhdPlan, res *publish.Result, p publish.Progress) (string, error) {
	url := az.blobURL()
	pb, err := az.pageClient(url)
	if err != nil {
		return "", az.err("blob client", err)
	}
	todo := plan.ranges
	props, err := pb.GetProperties(ctx, nil)
	switch {
	case err == nil && props.ContentLength != nil && *props.ContentLength == plan.size && metaValue(props.Metadata, metaDone) == plan.hash:
		res.Details["blob_existing"] = "true"
		res.Details["bytes_sent"] = "0"
		res.Details["ranges_sent"] = "0"
		p.Emit(publish.Event{Target: targetName, Step: "upload", Done: plan.size, Total: plan.size, Note: "blob already complete"})
		return url, nil
	case err == nil && props.ContentLength != nil && *props.ContentLength == plan.size && metaValue(props.Metadata, metaPending) == plan.hash:
		have, err := az.pageRanges(ctx, pb)
		if err != nil {
			return "", err
		}
		todo = missing(plan.ranges, have)
		res.Details["ranges_resumed"] = strconv.Itoa(len(plan.ranges) - len(todo))
	case err == nil || isStatus(err, http.StatusNotFound):
		if err != nil && bloberror.HasCode(err, bloberror.ContainerNotFound) {
			if err := az.createContainer(ctx); err != nil {
				return "", err
			}
		}
		// Create replaces any blob of that name: its old pages are gone.
		_, err = pb.Create(ctx, plan.size, &pageblob.CreateOptions{
			Metadata:    map[string]*string{metaPending: &plan.hash},
			HTTPHeaders: &blob.HTTPHeaders{BlobContentType: ptr("application/octet-stream")},
		})
		if err != nil && bloberror.HasCode(err, bloberror.ContainerNotFound) {
			if err := az.createContainer(ctx); err != nil {
				return "", err
			}
			_, err = pb.Create(ctx, plan.size, &pageblob.CreateOptions{Metadata: map[string]*string{metaPending: &plan.hash}})
		}
		if err != nil {
			return "", az.err(fmt.Sprintf("creating page blob %s of %d bytes", url, plan.size), err)
		}
	default:
		return "", az.err("reading blob properties of "+url, err)
	}

	sent, err := az.putRanges(ctx, pb, plan, todo, p)
	res.Details["bytes_sent"] = strconv.FormatInt(sent, 10)
	res.Details["ranges_sent"] = strconv.Itoa(len(todo))
	if err != nil {
		return "", err
	}
	// Verify: every range with data is there, then mark the blob complete.
	have, err := az.pageRanges(ctx, pb)
	if err != nil {
		return "", err
	}
	if miss := missing(plan.ranges, have); len(miss) > 0 {
		return "", fmt.Errorf("azure: verifying %s: %d of %d ranges missing after the upload (first at %d, %d bytes)",
			url, len(miss), len(plan.ranges), miss[0].Off, miss[0].Len)
	}
	if _, err := pb.SetMetadata(ctx, map[string]*string{metaDone: &plan.hash}, nil); err != nil {
		return "", az.err("marking the blob complete", err)
	}
	return url, nil
}

// putRanges sends the ranges with Workers parallel Put Page requests, each with its Content-MD5.
func (az *Target) putRanges(ctx context.Context, pb *pageblob.Client, plan *vhdPlan, todo []pageRange, p publish.Progress) (int64, error) {
	workers := az.Workers
	if workers <= 0 {
		workers = defaultWorkers
	}
	var total int64
	for _, r := range todo {
		total += r.Len
	}
	var sent atomic.Int64
	bufs := sync.Pool{New: func() any { b := make([]byte, az.chunk()); return &b }}
	p.Emit(publish.Event{Target: targetName, Step: "upload", Total: total})
	err := publish.Parallel(ctx, workers, len(todo), func(ctx context.Context, i int) error {
		r := todo[i]
		buf := bufs.Get().(*[]byte)
		defer bufs.Put(buf)
		b := (*buf)[:r.Len]
		if _, err := plan.src.ReadAt(b, r.Off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("azure: reading the VHD at %d (+%d): %w", r.Off, r.Len, err)
		}
		sum := md5.Sum(b)
		_, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(b)),
			blob.HTTPRange{Offset: r.Off, Count: r.Len},
			&pageblob.UploadPagesOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return az.err(fmt.Sprintf("put page at %d (+%d bytes)", r.Off, r.Len), err)
		}
		n := sent.Add(r.Len)
		p.Emit(publish.Event{Target: targetName, Step: "upload", Done: n, Total: total})
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return sent.Load(), fmt.Errorf("azure: upload stopped after %d of %d bytes (rerun to resume): %w", sent.Load(), total, err)
		}
		return sent.Load(), err
	}
	return sent.Load(), nil
}

// pageRanges lists the written page ranges of the blob.
func (az *Target) pageRanges(ctx context.Context, pb *pageblob.Client) ([]pageRange, error) {
	var out []pageRange
	pager := pb.NewGetPageRangesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, az.err("get page ranges", err)
		}
		for _, pr := range page.PageList.PageRange {
			if pr.Start != nil && pr.End != nil {
				out = append(out, pageRange{Off: *pr.Start, Len: *pr.End - *pr.Start + 1})
			}
		}
	}
	return out, nil
}

// missing returns the ranges of want not wholly covered by have.
func missing(want, have []pageRange) []pageRange {
	sort.Slice(have, func(i, j int) bool { return have[i].Off < have[j].Off })
	// Merge adjacent and overlapping ranges (Azurite does not merge them).
	var m []pageRange
	for _, h := range have {
		if n := len(m); n > 0 && h.Off <= m[n-1].Off+m[n-1].Len {
			m[n-1].Len = max(m[n-1].Off+m[n-1].Len, h.Off+h.Len) - m[n-1].Off
			continue
		}
		m = append(m, h)
	}
	var out []pageRange
	for _, w := range want {
		i := sort.Search(len(m), func(i int) bool { return m[i].Off+m[i].Len > w.Off })
		if i < len(m) && m[i].Off <= w.Off && m[i].Off+m[i].Len >= w.Off+w.Len {
			continue
		}
		out = append(out, w)
	}
	return out
}

// planFor opens the artifact as a fixed VHD (as is, or converted) and finds its non-zero ranges
// and content hash by reading the bytes inside the disk's extents.
func planFor(ctx context.Context, a publish.Artifact, chunk int64, p publish.Progress) (*vhdPlan, error) {
	plan, exts, err := openVHD(ctx, a)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte("imgfab-vhd-pages-v1"))
	binary.Write(h, binary.BigEndian, plan.size)
	buf := make([]byte, hashBlock)
	var cur *pageRange
	lastEnd := int64(0) // end of the last non-zero block
	scanned := int64(0) // blocks before this are done
	p.Emit(publish.Event{Target: targetName, Step: "scan", Total: plan.size})
	for _, e := range exts {
		if e.Len <= 0 {
			continue
		}
		start := max(e.Off/hashBlock*hashBlock, scanned)
		for off := start; off < e.Off+e.Len && off < plan.size; off += hashBlock {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := min(hashBlock, plan.size-off)
			b := buf[:n]
			if _, err := plan.src.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("reading the VHD at %d (+%d): %w", off, n, err)
			}
			scanned = off + n
			if isZero(b) {
				continue
			}
			binary.Write(h, binary.BigEndian, [2]int64{off, n})
			h.Write(b)
			if off != lastEnd {
				plan.zeroRanges++ // the zero run [lastEnd, off) is not sent
			}
			if cur != nil && cur.Off+cur.Len == off && cur.Len+n <= chunk {
				cur.Len += n
			} else {
				plan.ranges = append(plan.ranges, pageRange{Off: off, Len: n})
				cur = &plan.ranges[len(plan.ranges)-1]
			}
			plan.dataBytes += n
			lastEnd = off + n
		}
		p.Emit(publish.Event{Target: targetName, Step: "scan", Done: scanned, Total: plan.size})
	}
	if lastEnd != plan.size {
		plan.zeroRanges++
	}
	plan.hash = hex.EncodeToString(h.Sum(nil))
	return plan, nil
}

// openVHD opens the artifact as a fixed VHD: the file as it is when it is one whose data size is
// a whole MiB, else a view of the guest bytes with a footer (converted). It returns the plan with
// the VHD's source and size, and the extents of the VHD that may hold data.
func openVHD(ctx context.Context, a publish.Artifact) (*vhdPlan, []diskfmt.Extent, error) {
	if a.Image == nil {
		return nil, nil, errors.New("no disk image")
	}
	plan := &vhdPlan{close: func() {}}
	var exts []diskfmt.Extent
	if a.Image.Format() == "vhd" && a.Path != "" {
		f, err := os.Open(a.Path)
		if err != nil {
			return nil, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		if fi.Size() > footerSize && (fi.Size()-footerSize)%mib == 0 && fi.Size()-footerSize >= a.Image.Size() {
			plan.src, plan.size, plan.close = f, fi.Size(), func() { f.Close() }
			exts = append(append(exts, a.Image.Extents()...), diskfmt.Extent{Off: fi.Size() - footerSize, Len: footerSize})
		} else {
			f.Close() // not a whole number of MiB: rewrap the guest bytes
		}
	}
	if plan.src == nil {
		size := (a.Image.Size() + mib - 1) / mib * mib
		footer, err := vhdFooter(ctx, size)
		if err != nil {
			return nil, nil, err
		}
		plan.src = &vhdView{d: a.Image, size: size, footer: footer}
		plan.size = size + footerSize
		plan.converted = true
		exts = append(append(exts, a.Image.Extents()...), diskfmt.Extent{Off: size, Len: footerSize})
	}
	return plan, exts, nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// vhdView reads a guest disk as the fixed VHD diskfmt's "vhd" format writes: the guest bytes,
// zeros up to size (a whole MiB), then the footer.
type vhdView struct {
	d      diskfmt.Disk
	size   int64
	footer []byte
}

func (v *vhdView) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		at := off + int64(n)
		switch {
		case at < v.d.Size():
			m := min(int64(len(p)-n), v.d.Size()-at)
			k, err := v.d.ReadAt(p[n:n+int(m)], at)
			n += k
			if err != nil && !(errors.Is(err, io.EOF) && k == int(m)) {
				return n, err
			}
		case at < v.size:
			m := min(int64(len(p)-n), v.size-at)
			clear(p[n : n+int(m)])
			n += int(m)
		case at < v.size+footerSize:
			n += copy(p[n:], v.footer[at-v.size:])
		default:
			return n, io.EOF
		}
	}
	return n, nil
}

// vhdFooterFor returns the footer diskfmt's fixed VHD writer puts after a disk of size bytes (a
// whole MiB), by writing an empty disk of that size to a sink that keeps only the bytes at or past
// size.
func vhdFooter(ctx context.Context, size int64) ([]byte, error) {
	f, err := diskfmt.Lookup("vhd")
	if err != nil {
		return nil, err
	}
	s := &footerSink{at: size}
	if err := f.Write(ctx, s, emptyDisk(size)); err != nil {
		return nil, err
	}
	if len(s.b) != footerSize {
		return nil, fmt.Errorf("vhd footer: got %d bytes after the %d-byte disk, want %d", len(s.b), size, footerSize)
	}
	return s.b, nil
}

type emptyDisk int64

func (d emptyDisk) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }
func (d emptyDisk) Size() int64                             { return int64(d) }
func (d emptyDisk) Extents() []diskfmt.Extent               { return nil }

// footerSink is a seekable writer that keeps only what is written at or after at.
type footerSink struct {
	pos, at int64
	b       []byte
}

func (s *footerSink) Write(p []byte) (int, error) {
	for i, c := range p {
		if s.pos+int64(i) >= s.at {
			s.b = append(s.b, c)
		}
	}
	s.pos += int64(len(p))
	return len(p), nil
}

func (s *footerSink) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		s.pos = off
	case io.SeekCurrent:
		s.pos += off
	default:
		return 0, errors.New("azFooterSink: unsupported whence")
	}
	return s.pos, nil
}

func (s *footerSink) Truncate(int64) error { return nil }

// meta looks a metadata value up case-insensitively (the SDK canonicalizes header names).
func metaValue(m map[string]*string, key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) && v != nil {
			return *v
		}
	}
	return ""
}

func isStatus(err error, code int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

func ptr[T any](v T) *T { return &v }

// HyperVGeneration returns the Hyper-V generation ("V1" or "V2") an image of the artifact
// gets with --hyperv-generation want ("auto", "V1", "V2"), or why it cannot.
func HyperVGeneration(a publish.Artifact, want string) (string, error) {
	g, err := (&Target{HyperVGeneration: want}).generation(a)
	return string(g), err
}
