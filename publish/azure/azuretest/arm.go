package azuretest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// ARM is a loopback stand-in for the Azure Resource Manager calls imgfab makes to publish to an
// Azure Compute Gallery: galleries, gallery image definitions and gallery image versions, GET and
// PUT, each PUT a long-running operation polled through its Azure-AsyncOperation URL (InProgress,
// then Succeeded). Like ARM it speaks TLS (Client is a client that trusts it) and wants a bearer
// token (Credential gives it) and an api-version.
//
// It checks each PUT as Azure does: resource names; a location, the gallery's; a definition's
// osType, osState, hyperVGeneration (V1 or V2), architecture (x64 or Arm64, and Arm64 only with
// V2) and publisher/offer/sku (all three, unique in the gallery), none of which may change once it
// exists; a version's MAJOR.MINOR.PATCH name, its definition, and its source, a VHD blob URI with
// the id of its storage account (and whatever Source checks). It records what it received:
// Definition and Version return the resources as made. Every violation is answered as Azure
// answers it and recorded; NewARM fails the test at cleanup for any it did not expect (see
// TakeProblems).
type ARM struct {
	URL                         string // https://127.0.0.1:PORT
	Subscription, ResourceGroup string // the one resource group served: "sub-1", "rg-1"
	Token                       string // the bearer token every request must carry
	// Source, when set, checks a version's source blob URI (that the blob exists and is a fixed
	// VHD, say); an error refuses the PUT.
	Source func(uri string) error

	srv       *httptest.Server
	mu        sync.Mutex
	galleries map[string]*Gallery    // by name
	defs      map[string]*Definition // by GALLERY/NAME
	versions  map[string]*Version    // by GALLERY/IMAGE/VERSION
	ops       map[string]*armOp
	calls     []string
	// problems has its own lock: handlers record a violation while holding mu.
	pmu      sync.Mutex
	problems []string
}

// Gallery is an Azure Compute Gallery as the fake holds it.
type Gallery struct {
	Name, Location, ProvisioningState string
}

// Definition is a gallery image definition as the fake holds it: what its PUT carried.
type Definition struct {
	Gallery, Name, Location        string
	OSType, OSState                string
	HyperVGeneration, Architecture string // as received ("" when absent: Azure takes V1, x64)
	Publisher, Offer, SKU          string
	Tags                           map[string]string
	ProvisioningState              string
}

// Version is a gallery image version as the fake holds it: what its PUT carried.
type Version struct {
	Gallery, Image, Name, Location string
	SourceURI, StorageAccountID    string // storageProfile.osDiskImage.source
	Tags                           map[string]string
	ProvisioningState              string
}

type armOp struct {
	polls int
	state *string // the resource's provisioningState, Succeeded on the second poll
}

// NewARM starts the fake on loopback for subscription sub-1, resource group rg-1; it is closed,
// and any unexpected problem reported, at cleanup.
func NewARM(t testing.TB) *ARM {
	a := &ARM{Subscription: "sub-1", ResourceGroup: "rg-1", Token: "azuretest-arm-token",
		galleries: map[string]*Gallery{}, defs: map[string]*Definition{}, versions: map[string]*Version{}, ops: map[string]*armOp{}}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	a.URL = a.srv.URL
	t.Cleanup(func() {
		a.srv.Close()
		for _, p := range a.TakeProblems() {
			t.Errorf("azuretest ARM: %s", p)
		}
	})
	return a
}

// Client is an HTTP client that trusts the fake's certificate (for Target.Transport).
func (a *ARM) Client() *http.Client { return a.srv.Client() }

// Credential gives the fake's bearer token.
func (a *ARM) Credential() azcore.TokenCredential { return armCred(a.Token) }

type armCred string

func (c armCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(c), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// StorageAccountID is the resource id of a storage account in the fake's resource group.
func (a *ARM) StorageAccountID(account string) string {
	return "/subscriptions/" + a.Subscription + "/resourceGroups/" + a.ResourceGroup + "/providers/Microsoft.Storage/storageAccounts/" + account
}

// GalleryID is the resource id of a gallery (append "/images/NAME/versions/V" for the others).
func (a *ARM) GalleryID(gallery string) string {
	return "/subscriptions/" + a.Subscription + "/resourceGroups/" + a.ResourceGroup + "/providers/Microsoft.Compute/galleries/" + gallery
}

// TakeProblems returns the violations recorded so far and forgets them.
func (a *ARM) TakeProblems() []string {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	p := a.problems
	a.problems = nil
	return p
}

// Calls is every request served, as "METHOD PATH" (operation polls included).
func (a *ARM) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// Puts is how many PUTs were received.
func (a *ARM) Puts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if strings.HasPrefix(c, http.MethodPut+" ") {
			n++
		}
	}
	return n
}

// Gallery returns a copy of the gallery, or nil.
func (a *ARM) Gallery(name string) *Gallery {
	a.mu.Lock()
	defer a.mu.Unlock()
	if g := a.galleries[name]; g != nil {
		c := *g
		return &c
	}
	return nil
}

// Definition returns a copy of the image definition, or nil.
func (a *ARM) Definition(gallery, name string) *Definition {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := a.defs[gallery+"/"+name]; d != nil {
		c := *d
		return &c
	}
	return nil
}

// Version returns a copy of the image version, or nil.
func (a *ARM) Version(gallery, image, version string) *Version {
	a.mu.Lock()
	defer a.mu.Unlock()
	if v := a.versions[gallery+"/"+image+"/"+version]; v != nil {
		c := *v
		return &c
	}
	return nil
}

func (a *ARM) problem(format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	a.pmu.Lock()
	a.problems = append(a.problems, msg)
	a.pmu.Unlock()
	return msg
}

// armError answers an ARM error body.
func armError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// Azure's naming rules: a gallery's name has letters, digits, '.' and '_' (no '-'), a
// definition's also '-', both start and end with a letter or digit, at most 80 characters.
var (
	galleryNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._]{0,78}[A-Za-z0-9])?$`)
	imageNameRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,78}[A-Za-z0-9])?$`)
	versionNameRE = regexp.MustCompile(`^([0-9]+)\.([0-9]+)\.([0-9]+)$`)
	storageIDRE   = regexp.MustCompile(`^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage/storageAccounts/[a-z0-9]{3,24}$`)
)

func (a *ARM) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer "+a.Token {
		armError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", a.problem("%s %s: Authorization %q", r.Method, r.URL.Path, r.Header.Get("Authorization")))
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		armError(w, http.StatusBadRequest, "MissingApiVersionParameter", a.problem("%s %s: no api-version", r.Method, r.URL.Path))
		return
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/operations/"); ok && r.Method == http.MethodGet {
		a.poll(w, id)
		return
	}
	prefix := "/subscriptions/" + a.Subscription + "/resourceGroups/" + a.ResourceGroup + "/providers/Microsoft.Compute/galleries/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	parts := strings.Split(rest, "/")
	switch {
	case !ok:
		armError(w, http.StatusNotFound, "InvalidResourceType", a.problem("%s %s: not a gallery resource of %s/%s", r.Method, r.URL.Path, a.Subscription, a.ResourceGroup))
	case len(parts) == 1:
		a.gallery(w, r, parts[0])
	case len(parts) == 3 && parts[1] == "images":
		a.definition(w, r, parts[0], parts[2])
	case len(parts) == 5 && parts[1] == "images" && parts[3] == "versions":
		a.version(w, r, parts[0], parts[2], parts[4])
	default:
		armError(w, http.StatusNotFound, "InvalidResourceType", a.problem("%s %s: unknown resource", r.Method, r.URL.Path))
	}
}

// poll serves an Azure-AsyncOperation URL: InProgress on the first poll, then Succeeded (and the
// resource with it).
func (a *ARM) poll(w http.ResponseWriter, id string) {
	op := a.ops[id]
	if op == nil {
		armError(w, http.StatusNotFound, "NotFound", a.problem("operation %s unknown", id))
		return
	}
	op.polls++
	status := "InProgress"
	if op.polls >= 2 {
		status = "Succeeded"
		*op.state = "Succeeded"
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"name": id, "status": status})
}

// accepted answers a PUT: 201 with the resource and the operation to poll.
func (a *ARM) accepted(w http.ResponseWriter, state *string, body any) {
	id := "op-" + strconv.Itoa(len(a.ops)+1)
	a.ops[id] = &armOp{state: state}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Azure-AsyncOperation", a.URL+"/operations/"+id+"?api-version=2024-03-03")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(body)
}

func notFound(w http.ResponseWriter, what string) {
	armError(w, http.StatusNotFound, "ResourceNotFound", "The Resource '"+what+"' was not found.")
}

// readPut decodes a PUT body: location, tags, properties.
func readPut(r *http.Request, props any) (location string, tags map[string]string, err error) {
	var body struct {
		Location   string            `json:"location"`
		Tags       map[string]string `json:"tags"`
		Properties json.RawMessage   `json:"properties"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return "", nil, err
	}
	if props != nil && len(body.Properties) > 0 {
		if err := json.Unmarshal(body.Properties, props); err != nil {
			return "", nil, err
		}
	}
	return body.Location, body.Tags, nil
}

func (a *ARM) gallery(w http.ResponseWriter, r *http.Request, name string) {
	g := a.galleries[name]
	switch r.Method {
	case http.MethodGet:
		if g == nil {
			notFound(w, "Microsoft.Compute/galleries/"+name)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a.galleryJSON(g))
	case http.MethodPut:
		loc, _, err := readPut(r, nil)
		switch {
		case err != nil:
			armError(w, http.StatusBadRequest, "InvalidRequestContent", a.problem("PUT gallery %s: body: %v", name, err))
		case !galleryNameRE.MatchString(name):
			armError(w, http.StatusBadRequest, "InvalidParameter", a.problem("PUT gallery %s: invalid gallery name", name))
		case loc == "":
			armError(w, http.StatusBadRequest, "LocationRequired", a.problem("PUT gallery %s: no location", name))
		case g != nil && !strings.EqualFold(g.Location, loc):
			armError(w, http.StatusConflict, "InvalidResourceLocation", a.problem("PUT gallery %s: location %s, it is in %s", name, loc, g.Location))
		default:
			if g == nil {
				g = &Gallery{Name: name, Location: loc}
				a.galleries[name] = g
			}
			g.ProvisioningState = "Creating"
			a.accepted(w, &g.ProvisioningState, a.galleryJSON(g))
		}
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", a.problem("%s gallery %s", r.Method, name))
	}
}

func (a *ARM) galleryJSON(g *Gallery) map[string]any {
	return map[string]any{"id": a.GalleryID(g.Name), "name": g.Name, "type": "Microsoft.Compute/galleries", "location": g.Location,
		"properties": map[string]any{"provisioningState": g.ProvisioningState, "identifier": map[string]string{"uniqueName": a.Subscription + "-" + strings.ToUpper(g.Name)}}}
}

func (a *ARM) definition(w http.ResponseWriter, r *http.Request, gallery, name string) {
	g, d := a.galleries[gallery], a.defs[gallery+"/"+name]
	what := "Microsoft.Compute/galleries/" + gallery + "/images/" + name
	switch r.Method {
	case http.MethodGet:
		if d == nil {
			notFound(w, what)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a.definitionJSON(d))
	case http.MethodPut:
		var p struct {
			OSType           string `json:"osType"`
			OSState          string `json:"osState"`
			HyperVGeneration string `json:"hyperVGeneration"`
			Architecture     string `json:"architecture"`
			Identifier       struct {
				Publisher string `json:"publisher"`
				Offer     string `json:"offer"`
				SKU       string `json:"sku"`
			} `json:"identifier"`
		}
		loc, tags, err := readPut(r, &p)
		fail := func(status int, code, format string, args ...any) {
			armError(w, status, code, a.problem("PUT image definition %s/%s: "+format, append([]any{gallery, name}, args...)...))
		}
		gen, arch := p.HyperVGeneration, p.Architecture
		if gen == "" {
			gen = "V1" // Azure's default
		}
		if arch == "" {
			arch = "x64" // Azure's default
		}
		switch {
		case err != nil:
			fail(http.StatusBadRequest, "InvalidRequestContent", "body: %v", err)
			return
		case g == nil:
			fail(http.StatusNotFound, "ParentResourceNotFound", "no gallery %s", gallery)
			return
		case !imageNameRE.MatchString(name):
			fail(http.StatusBadRequest, "InvalidParameter", "invalid image definition name")
			return
		case !strings.EqualFold(loc, g.Location):
			fail(http.StatusBadRequest, "InvalidParameter", "location %q, the gallery is in %s", loc, g.Location)
			return
		case p.OSType != "Linux" && p.OSType != "Windows":
			fail(http.StatusBadRequest, "InvalidParameter", "osType %q", p.OSType)
			return
		case p.OSState != "Generalized" && p.OSState != "Specialized":
			fail(http.StatusBadRequest, "InvalidParameter", "osState %q", p.OSState)
			return
		case gen != "V1" && gen != "V2":
			fail(http.StatusBadRequest, "InvalidParameter", "hyperVGeneration %q", p.HyperVGeneration)
			return
		case arch != "x64" && arch != "Arm64":
			fail(http.StatusBadRequest, "InvalidParameter", "architecture %q", p.Architecture)
			return
		case arch == "Arm64" && gen != "V2":
			fail(http.StatusBadRequest, "InvalidParameter", "architecture Arm64 with hyperVGeneration %s (Arm64 is V2 only)", gen)
			return
		case p.Identifier.Publisher == "" || p.Identifier.Offer == "" || p.Identifier.SKU == "":
			fail(http.StatusBadRequest, "InvalidParameter", "identifier %+v: publisher, offer and sku are required", p.Identifier)
			return
		}
		for _, o := range a.defs {
			if o.Gallery == gallery && o.Name != name && o.Publisher == p.Identifier.Publisher && o.Offer == p.Identifier.Offer && o.SKU == p.Identifier.SKU {
				fail(http.StatusConflict, "Conflict", "identifier %s/%s/%s is image definition %s's", o.Publisher, o.Offer, o.SKU, o.Name)
				return
			}
		}
		nd := &Definition{Gallery: gallery, Name: name, Location: g.Location, OSType: p.OSType, OSState: p.OSState,
			HyperVGeneration: p.HyperVGeneration, Architecture: p.Architecture,
			Publisher: p.Identifier.Publisher, Offer: p.Identifier.Offer, SKU: p.Identifier.SKU, Tags: tags}
		if d != nil {
			for _, c := range [][3]string{{"osType", d.OSType, nd.OSType}, {"osState", d.OSState, nd.OSState},
				{"hyperVGeneration", d.HyperVGeneration, nd.HyperVGeneration}, {"architecture", d.Architecture, nd.Architecture},
				{"identifier", d.Publisher + "/" + d.Offer + "/" + d.SKU, nd.Publisher + "/" + nd.Offer + "/" + nd.SKU}} {
				if c[1] != c[2] {
					fail(http.StatusConflict, "PropertyChangeNotAllowed", "changing property 'galleryImage.properties.%s' (%q to %q) is not allowed", c[0], c[1], c[2])
					return
				}
			}
		}
		nd.ProvisioningState = "Creating"
		a.defs[gallery+"/"+name] = nd
		a.accepted(w, &nd.ProvisioningState, a.definitionJSON(nd))
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", a.problem("%s %s", r.Method, what))
	}
}

func (a *ARM) definitionJSON(d *Definition) map[string]any {
	props := map[string]any{"osType": d.OSType, "osState": d.OSState, "provisioningState": d.ProvisioningState,
		"identifier": map[string]string{"publisher": d.Publisher, "offer": d.Offer, "sku": d.SKU}}
	if d.HyperVGeneration != "" {
		props["hyperVGeneration"] = d.HyperVGeneration
	}
	if d.Architecture != "" {
		props["architecture"] = d.Architecture
	}
	return map[string]any{"id": a.GalleryID(d.Gallery) + "/images/" + d.Name, "name": d.Name, "type": "Microsoft.Compute/galleries/images",
		"location": d.Location, "tags": d.Tags, "properties": props}
}

func (a *ARM) version(w http.ResponseWriter, r *http.Request, gallery, image, name string) {
	d, v := a.defs[gallery+"/"+image], a.versions[gallery+"/"+image+"/"+name]
	what := "Microsoft.Compute/galleries/" + gallery + "/images/" + image + "/versions/" + name
	switch r.Method {
	case http.MethodGet:
		if v == nil {
			notFound(w, what)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a.versionJSON(v))
	case http.MethodPut:
		var p struct {
			StorageProfile struct {
				Source      *json.RawMessage `json:"source"`
				OSDiskImage *struct {
					Source struct {
						URI              string `json:"uri"`
						StorageAccountID string `json:"storageAccountId"`
						ID               string `json:"id"`
					} `json:"source"`
				} `json:"osDiskImage"`
			} `json:"storageProfile"`
		}
		loc, tags, err := readPut(r, &p)
		fail := func(status int, code, format string, args ...any) {
			armError(w, status, code, a.problem("PUT image version %s/%s/%s: "+format, append([]any{gallery, image, name}, args...)...))
		}
		if err != nil {
			fail(http.StatusBadRequest, "InvalidRequestContent", "body: %v", err)
			return
		}
		if d == nil {
			fail(http.StatusNotFound, "ParentResourceNotFound", "no image definition %s in gallery %s", image, gallery)
			return
		}
		if m := versionNameRE.FindStringSubmatch(name); m == nil || !int32s(m[1:]...) {
			fail(http.StatusBadRequest, "InvalidParameter", "version name %q: want MAJOR.MINOR.PATCH, each a 32-bit integer", name)
			return
		}
		if !strings.EqualFold(loc, d.Location) {
			fail(http.StatusBadRequest, "InvalidParameter", "location %q, the gallery is in %s", loc, d.Location)
			return
		}
		od := p.StorageProfile.OSDiskImage
		if p.StorageProfile.Source != nil || od == nil || od.Source.ID != "" {
			fail(http.StatusBadRequest, "InvalidParameter", "want a VHD source (storageProfile.osDiskImage.source.uri), got %+v", p.StorageProfile)
			return
		}
		src := od.Source
		if !strings.HasPrefix(src.URI, "https://") && !strings.HasPrefix(src.URI, "http://127.0.0.1:") || !strings.HasSuffix(src.URI, ".vhd") {
			fail(http.StatusBadRequest, "InvalidParameter", "source uri %q is not a VHD blob", src.URI)
			return
		}
		if !storageIDRE.MatchString(src.StorageAccountID) {
			fail(http.StatusBadRequest, "InvalidParameter", "source storageAccountId %q is not a storage account's resource id", src.StorageAccountID)
			return
		}
		if a.Source != nil {
			if err := a.Source(src.URI); err != nil {
				fail(http.StatusBadRequest, "InvalidParameter", "source %s: %v", src.URI, err)
				return
			}
		}
		if v != nil && (v.SourceURI != src.URI || v.StorageAccountID != src.StorageAccountID) {
			fail(http.StatusConflict, "PropertyChangeNotAllowed", "changing property 'galleryImageVersion.properties.storageProfile' is not allowed")
			return
		}
		nv := &Version{Gallery: gallery, Image: image, Name: name, Location: d.Location, SourceURI: src.URI,
			StorageAccountID: src.StorageAccountID, Tags: tags, ProvisioningState: "Creating"}
		a.versions[gallery+"/"+image+"/"+name] = nv
		a.accepted(w, &nv.ProvisioningState, a.versionJSON(nv))
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", a.problem("%s %s", r.Method, what))
	}
}

func int32s(ss ...string) bool {
	for _, s := range ss {
		if _, err := strconv.ParseInt(s, 10, 32); err != nil {
			return false
		}
	}
	return true
}

func (a *ARM) versionJSON(v *Version) map[string]any {
	return map[string]any{"id": a.GalleryID(v.Gallery) + "/images/" + v.Image + "/versions/" + v.Name, "name": v.Name,
		"type": "Microsoft.Compute/galleries/images/versions", "location": v.Location, "tags": v.Tags,
		"properties": map[string]any{"provisioningState": v.ProvisioningState,
			"storageProfile": map[string]any{"osDiskImage": map[string]any{"source": map[string]string{"uri": v.SourceURI, "storageAccountId": v.StorageAccountID}}}}}
}
