// Package serve is imgfab's image factory as an HTTP service (`imgfab serve`, docs/serve.md):
// classes are posted as YAML, artifacts (a class built for an architecture into a disk format)
// are built on first request and then served from an OCI registry, the store.
//
// Everything the service knows is in the store, named by content: a class under
// class-<sha256 of its canonical form>; the source digest a class builds from on an architecture
// under pin-<class>-<arch> (written on first use, moved by a refresh); each artifact under
// a-<key>, where the key is the sha256 of the class id, the architecture, the source's manifest
// digest, the file name (format) and imgfab's version. Each is an OCI 1.1 artifact (artifactType,
// empty config, one blob) written blob first and manifest last, so a reader never sees a partial
// one. Builds are byte-reproducible: two replicas racing on one key upload the same blob and tag
// the same manifest, so no lock is needed between replicas; within one, builds are de-duplicated
// per key and bounded (Config.MaxBuilds running, MaxQueue waiting, then 503).
//
// A replica's only state is its scratch directory: builds in progress (removed on start, never
// resumed) and copies of artifacts it served (blobs/<sha256>, checked against their digest on
// download), from which responses are sent with http.ServeContent (ETag = the sha256, Range,
// HEAD). What it remembers in memory (classes, artifacts) is immutable; pins are re-read from the
// store after Config.PinTTL.
//
// The Builder (cmd/imgfab) parses classes and builds; this package never runs a build itself,
// never prints, and reads no file of the client's.
//
// Limits: no eviction of the scratch cache (size the volume; it is a cache, safe to empty); the
// artifact list of a class reads every artifact manifest of the repository (fine for thousands).
// A KubeVirt containerDisk (cd-<key>, containerdisk.go) is made from the qcow2 artifact on
// request, as `imgfab push oci` makes one.
package serve
