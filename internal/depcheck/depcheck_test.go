// Package depcheck holds the import-direction test: imports only point down the pipeline
// (docs/ARCHITECTURE.md), and the packages that must stay ignorant of a layer do.
package depcheck

import (
	"encoding/json"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/imgfab/imgfab/"

// allowed lists, for each package of the module (by its path in the module; a trailing /...
// covers sub-packages), the packages of the module it may import. Anything else is a violation:
// a new edge must be added here on purpose.
var allowed = map[string][]string{
	// cmd/imgfab: cache and layers for lock (digests, filling the store) and the output cache.
	"cmd/imgfab": {"spec", "customize", "firstboot", "assemble", "bootloader", "diskfmt", "inspect", "check", "publish/...", "internal/...", "cache", "layers", "secureboot", "serve"},
	// cache: the content store, below layers; imports nothing of the module.
	"cache":     {"internal/..."},
	"spec":      {"diskfmt", "internal/..."}, // the class file: data, checked against the format names
	"assemble":  {"customize", "firstboot", "layers", "rootfs/...", "bootloader", "partition", "diskfmt", "internal/...", "verity", "secureboot"},
	"customize": {"internal/..."}, // reads the image through fs.FS, writes a tar layer
	// firstboot: edits the build's tar stream; merges /etc/fstab with customize.MergeFstab.
	"firstboot": {"customize", "internal/..."},
	// layers: registry blobs are read and written through the store.
	"layers":       {"cache", "internal/..."},
	"rootfs":       {"internal/..."},
	"rootfs/ext4":  {"rootfs", "internal/..."},
	"rootfs/erofs": {"rootfs", "internal/..."},
	// verity: a dm-verity hash tree over bytes; knows no filesystem or partition.
	"verity": {"internal/..."},
	// serve: the HTTP service and its registry store; builds through a Builder cmd/imgfab gives it.
	"serve":        {"internal/..."},
	"secureboot":   {"internal/..."}, // Authenticode signing and Secure Boot keys over bytes; knows no image layout
	"bootloader":   {"rootfs", "internal/..."},
	"partition":    {"internal/..."},
	"diskfmt":      {"internal/..."},
	"inspect":      {"diskfmt", "partition", "rootfs/...", "inspect/initrd", "internal/...", "verity", "secureboot"},
	"publish":      {"diskfmt", "internal/..."},                // the core the targets share
	"publish/...":  {"publish/...", "diskfmt", "internal/..."}, // targets and their test servers
	"internal/...": {"internal/..."},
	"testdata/...": {"..."},
	"deploy/...":   {"internal/..."}, // manifests and the image of imgfab itself
	// inspect/initrd reads an initrd stream and knows no disk; check's target rules read a disk
	// through inspect's readers and the initrd's through inspect/initrd.
	"inspect/initrd": {"internal/..."},
	"check":          {"diskfmt", "inspect", "inspect/initrd", "rootfs/...", "internal/..."},
}

// forbidden are outside modules a package must not import, whatever it imports of ours.
var forbidden = map[string][]string{
	"rootfs/...":  {"github.com/google/go-containerregistry"}, // rootfs reads a tar stream
	"diskfmt":     {"github.com/google/go-containerregistry", "github.com/diskfs/go-diskfs"},
	"publish/...": {"github.com/diskfs/go-diskfs"}, // a disk is bytes to publish
}

func match(pattern, pkg string) bool {
	if pattern == "..." {
		return true
	}
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == p || strings.HasPrefix(pkg, p+"/")
	}
	return pkg == pattern
}

func rule[T any](m map[string]T, pkg string) (T, bool) {
	var best string
	for p := range m { // the most specific pattern wins
		if match(p, pkg) && len(p) > len(best) {
			best = p
		}
	}
	v, ok := m[best]
	return v, ok && best != ""
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct {
			ImportPath    string
			Imports, Deps []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		pkg := strings.TrimPrefix(p.ImportPath, module)
		ok, known := rule(allowed, pkg)
		if !known {
			t.Errorf("%s: no rule in allowed (add one)", pkg)
			continue
		}
		for _, imp := range p.Imports {
			rel, ours := strings.CutPrefix(imp, module)
			if !ours || rel == pkg {
				continue
			}
			if !slices.ContainsFunc(ok, func(pat string) bool { return match(pat, rel) }) {
				t.Errorf("%s imports %s: against the pipeline's direction (allowed: %v)", pkg, rel, ok)
			}
		}
		if bad, ok := rule(forbidden, pkg); ok {
			for _, dep := range p.Deps {
				for _, b := range bad {
					if dep == b || strings.HasPrefix(dep, b+"/") {
						t.Errorf("%s depends on %s (through its imports): it must not", pkg, path.Dir(dep+"/x"))
					}
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d packages listed", n)
	}
}
