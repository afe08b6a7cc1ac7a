package layers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// Flatten composes layers (bottom-first) into ONE tar stream, top layer first: each path at most
// once, the topmost version wins; OCI whiteouts are applied (".wh.NAME" hides NAME of lower layers,
// "DIR/.wh..wh..opq" hides everything below DIR of lower layers; a whiteout never hides entries of
// its own layer and never appears in the output); a non-directory hides everything under its path
// in lower layers; directories merge. Names are clean relative paths ("etc/passwd", "." for the
// root, emitted only if a layer has it); hardlink targets are cleaned likewise. A directory's own
// entry may come after its children. Hardlinks to a lower layer's file come last.
//
// Flatten reads and decompresses ahead of the consumer in its own goroutine. Errors, among them
// *UnsafeEntryError and *DigestError, are returned by Read. Cancelling ctx or closing the reader
// stops it; Close waits for the goroutine to finish.
func Flatten(ctx context.Context, layers []Layer) io.ReadCloser {
	p := newBufPipe(ctx)
	fr := &flattenReader{bufPipe: p, done: make(chan struct{})}
	go func() {
		defer close(fr.done)
		f := newFlattener(ctx, tar.NewWriter(p))
		err := f.run(layers)
		if err == nil {
			err = f.tw.Close()
		} else {
			// The entries written so far reach the reader whole (padding included), then the error:
			// it is not reported in the middle of an earlier entry's data.
			_ = f.tw.Flush()
		}
		p.closeWrite(err)
	}()
	return fr
}

type flattenReader struct {
	*bufPipe
	done chan struct{}
}

func (r *flattenReader) Close() error {
	r.bufPipe.Close()
	<-r.done
	return nil
}

// State of a path as left by the layers above the one being read.
const (
	sDir      = 1 << iota // emitted as a directory
	sNonDir               // emitted as a non-directory
	sImplied              // a directory there (a visible entry lies below it), entry not emitted
	sWhiteout             // deleted: hides the path and everything below
	sOpaque               // everything below is hidden
)

type pstate struct {
	f     uint8
	layer int32 // for sNonDir: index of the layer that emitted it
}

// State of a path within the layer being read.
const (
	cDir       = 1 << iota // an entry that is a directory
	cNonDir                // an entry that is not a directory
	cSymlink               // ... and is a symlink
	cEmitted               // the entry was visible and emitted (or held back)
	cParent                // some entry of this layer lies below it
	cParentVis             // some visible entry of this layer lies below it
	cWhiteout              // whited out by this layer
	cOpaque                // made opaque by this layer
	cHeld                  // a hardlink held back to the end of the stream
	cPromoted              // a hardlink emitted after this layer with its hidden target's data
)

// promo is a visible hardlink whose target (holding the data) is hidden by an upper layer.
type promo struct {
	target string        // the hidden entry holding the data
	name   string        // the first visible link name; it becomes the data holder
	links  []*tar.Header // further visible links, to name
}

type heldLink struct {
	sameLayer bool // target is a held link of the same layer, checked already
	layer     int
	lname     string
	entry     string // as named in the layer
	hdr       tar.Header
	target    string
	tnode     int32
}

type flattener struct {
	ctx    context.Context
	tw     *tar.Writer
	paths  *pathTree
	upper  []pstate        // by path node
	hidBy  map[int32]int32 // path node -> the topmost layer that whited it out or made it opaque
	held   []heldLink
	buf    []byte
	layers []Layer
	nodes  []int32 // scratch: the nodes of an entry's path
	tnodes []int32 // scratch: the nodes of a hardlink target

	linkSteps int   // hidden hardlinks followed (for a test that the work stays linear)
	sparse    int64 // logical bytes of the sparse files read so far
}

// MaxSparseBytes bounds the logical size of all the sparse files (GNU tar -S members) of one
// image: a sparse file's holes are expanded to zeros in the stream and found again by the
// filesystem writer, so they cost CPU time (about 100 s per TiB) that the layer's bytes do not
// show. 64 GiB is a few seconds; beyond it the entry is refused, naming the layer and entry.
const MaxSparseBytes = 64 << 30

// isSparse reports whether h is a GNU sparse file (old GNU 'S', or PAX GNU.sparse records).
func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func newFlattener(ctx context.Context, tw *tar.Writer) *flattener {
	return &flattener{ctx: ctx, tw: tw, paths: newPathTree(), hidBy: make(map[int32]int32)}
}

// up is the state left by the layers above at path node n.
func (f *flattener) up(n int32) pstate {
	if int(n) < len(f.upper) {
		return f.upper[n]
	}
	return pstate{}
}

func (f *flattener) setUp(n int32, st pstate) {
	for int(n) >= len(f.upper) {
		f.upper = append(f.upper, pstate{})
	}
	f.upper[n] = st
}

func (f *flattener) run(layers []Layer) error {
	f.layers = layers
	above := make(map[string]bool)
	for i := len(layers) - 1; i >= 0; i-- {
		// A layer named by a digest that a layer above has too holds the same bytes, all of them
		// shadowed by the copy above: it is skipped, so that a manifest naming one blob many times
		// costs no more than the blob's bytes.
		if n := layers[i].Name; strings.HasPrefix(n, "sha256:") {
			if above[n] {
				continue
			}
			above[n] = true
		}
		if err := f.layer(i, layers[i]); err != nil {
			return err
		}
	}
	// Bottom layers' links first: a link may name a lower layer's held link.
	sort.SliceStable(f.held, func(a, b int) bool { return f.held[a].layer < f.held[b].layer })
	for _, h := range f.held {
		st := f.up(h.tnode)
		switch {
		case h.sameLayer:
		case st.f&sNonDir != 0 && int(st.layer) < h.layer:
		case st.f&(sDir|sImplied) != 0:
			return &UnsafeEntryError{Layer: h.lname, Entry: h.entry, Reason: "hardlink to a directory"}
		default:
			return &UnsafeEntryError{Layer: h.lname, Entry: h.entry, Reason: f.missingTarget(h)}
		}
		if err := f.writeHeader(&h.hdr, h.lname); err != nil {
			return fmt.Errorf("layer %s: writing entry %q: %w", h.lname, h.hdr.Name, err)
		}
	}
	return nil
}

// missingTarget says why the target of a held hardlink is not there to link to.
func (f *flattener) missingTarget(h heldLink) string {
	why := "hardlink to missing name " + h.target
	state := func(p string) (pstate, int32) {
		n := f.paths.find(p)
		if n < 0 {
			return pstate{}, n
		}
		return f.up(n), n
	}
	hidden := func(p string, what string) string {
		st, n := state(p)
		if li, ok := f.hidBy[n]; ok && n >= 0 && st.f&(sWhiteout|sOpaque) != 0 {
			return fmt.Sprintf("%s: the target %q was %s by layer %s", why, h.target, what, f.layers[li].Name)
		}
		return ""
	}
	// The nearest cause first: the target itself, then its directories from the bottom up.
	if st, _ := state(h.target); st.f&sWhiteout != 0 {
		if s := hidden(h.target, "whited out"); s != "" {
			return s
		}
	}
	for d := path.Dir(h.target); ; d = path.Dir(d) {
		dst, _ := state(d)
		st := dst.f
		switch {
		case st&sWhiteout != 0:
			if s := hidden(d, "whited out (its directory "+d+")"); s != "" {
				return s
			}
		case st&sOpaque != 0:
			if s := hidden(d, "hidden (the opaque directory "+d+")"); s != "" {
				return s
			}
		case st&sNonDir != 0:
			return fmt.Sprintf("%s: %s is not a directory (layer %s)", why, d, f.layers[dst.layer].Name)
		}
		if d == "." {
			break
		}
	}
	if st, _ := state(h.target); st.f&sNonDir != 0 && int(st.layer) >= h.layer {
		if int(st.layer) == h.layer {
			return why + ": it comes after the link in the same layer"
		}
		return fmt.Sprintf("%s: the name is replaced by layer %s, above the link", why, f.layers[st.layer].Name)
	}
	return why
}

// pathTree numbers clean relative paths: a path's node is found from its parent's node and its last
// component. The nodes of a path and of all its ancestors cost O(len(path)) to find, where a map
// keyed by each ancestor's whole path costs O(len(path) × depth): a 4 KiB name 2,000 deep would
// hash 4 MB.
type pathTree struct {
	ids    map[pathKey]int32
	parent []int32

	// The directory last walked and its nodes: a tar lists a directory's entries together.
	lastDir   string
	lastNodes []int32

	hashed int // bytes of names looked up (for a test that the work stays linear)
}

type pathKey struct {
	parent int32
	name   string
}

// rootNode is ".".
const rootNode int32 = 0

func newPathTree() *pathTree {
	return &pathTree{ids: make(map[pathKey]int32), parent: []int32{-1}}
}

// child is the node of component name below node n, made if need be.
func (t *pathTree) child(n int32, name string) int32 {
	k := pathKey{n, name}
	t.hashed += len(name)
	c, ok := t.ids[k]
	if !ok {
		c = int32(len(t.parent))
		t.parent = append(t.parent, n)
		k.name = strings.Clone(name) // not the whole tar name it is cut from
		t.ids[k] = c
	}
	return c
}

// walk sets buf to the nodes of "." and of each ancestor of the clean relative path p, downwards,
// then p's own (the last); p == "." gives just ".".
func (t *pathTree) walk(p string, buf []int32) []int32 {
	if p == "." {
		return append(buf[:0], rootNode)
	}
	dir, base := ".", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, base = p[:i], p[i+1:]
	}
	if t.lastNodes == nil || dir != t.lastDir {
		t.lastNodes = t.walkAll(dir, t.lastNodes)
		t.lastDir = strings.Clone(dir)
	}
	buf = append(buf[:0], t.lastNodes...)
	return append(buf, t.child(buf[len(buf)-1], base))
}

// walkAll is walk without the cache.
func (t *pathTree) walkAll(p string, buf []int32) []int32 {
	buf = append(buf[:0], rootNode)
	if p == "." {
		return buf
	}
	n := rootNode
	for p != "" {
		comp, rest, _ := strings.Cut(p, "/")
		n = t.child(n, comp)
		buf = append(buf, n)
		p = rest
	}
	return buf
}

// find is p's node, -1 if it has none.
func (t *pathTree) find(p string) int32 {
	n := rootNode
	if p == "." {
		return n
	}
	for p != "" {
		comp, rest, _ := strings.Cut(p, "/")
		c, ok := t.ids[pathKey{n, comp}]
		if !ok {
			return -1
		}
		n, p = c, rest
	}
	return n
}

// ancestorNames calls fn with the index in nodes and the path of each proper ancestor of p
// (whose nodes, from walk, are nodes), "." first.
func ancestorNames(p string, nodes []int32, fn func(i int, a string) error) error {
	if p == "." {
		return nil
	}
	if err := fn(0, "."); err != nil {
		return err
	}
	i := 1
	for j := 0; j < len(p); j++ {
		if p[j] == '/' {
			if err := fn(i, p[:j]); err != nil {
				return err
			}
			i++
		}
	}
	return nil
}

// visible reports whether an entry of the layer being read at p (its nodes and its ancestors',
// from walk) is seen through the layers above.
func (f *flattener) visible(nodes []int32, isDir bool) bool {
	for _, a := range nodes[:len(nodes)-1] {
		if f.up(a).f&(sWhiteout|sNonDir|sOpaque) != 0 {
			return false
		}
	}
	st := f.up(nodes[len(nodes)-1]).f
	switch {
	case st&(sDir|sNonDir|sWhiteout) != 0:
		return false
	case st&sImplied != 0 && !isDir:
		return false
	}
	return true
}

// Ranges of the numbers of a tar header that the filesystem writer narrows: what is outside is
// refused, never wrapped nor clamped (see the package doc).
const (
	// MaxID is the largest uid or gid: ids are 32 bits and 2^32−1 is (uid_t)−1, "no id".
	MaxID = 1<<32 - 2
	// MinTime and MaxTime bound the seconds of mtime, atime and ctime: what ext4's 256-byte inodes
	// store (a signed 32-bit field plus two epoch bits: 1901-12-13T20:45:52Z to 2446-05-10T22:38:55Z).
	MinTime = -1 << 31
	MaxTime = 3<<32 + 1<<31 - 1
	// modeBits are the mode bits an entry may carry: permissions, setuid/setgid/sticky, and the file
	// type bits (S_IFMT) that some tar writers put there too; the type itself comes from the typeflag.
	modeBits = 07777 | 0170000
)

// checkNumbers range-checks the header's ids, times and mode; "" if they are fine.
func checkNumbers(h *tar.Header) string {
	for _, id := range []struct {
		what string
		v    int
	}{{"uid", h.Uid}, {"gid", h.Gid}} {
		if id.v < 0 || int64(id.v) > MaxID {
			return fmt.Sprintf("%s %d out of range (0 to %d)", id.what, id.v, int64(MaxID))
		}
	}
	for _, t := range []struct {
		what string
		v    time.Time
	}{{"mtime", h.ModTime}, {"atime", h.AccessTime}, {"ctime", h.ChangeTime}} {
		if t.v.IsZero() {
			continue // not in the entry (PAX atime and ctime are optional)
		}
		if s := t.v.Unix(); s < MinTime || s > MaxTime {
			return fmt.Sprintf("%s %d out of range: the filesystem stores %d (%s) to %d (%s)", t.what, s,
				int64(MinTime), time.Unix(MinTime, 0).UTC().Format(time.RFC3339),
				int64(MaxTime), time.Unix(MaxTime, 0).UTC().Format(time.RFC3339))
		}
	}
	if h.Mode < 0 || h.Mode&^modeBits != 0 {
		return fmt.Sprintf("mode %#o out of range: only permission bits (07777) and file type bits (0170000)", h.Mode)
	}
	return ""
}

// maxPath is the longest name (and hardlink target) accepted: Linux's PATH_MAX is 4096 bytes with
// the terminating NUL. Work per entry grows with its name's length times its depth: a PAX path
// may be 1 MiB.
const maxPath = 4095

// cleanName checks a tar name (or hardlink target) and returns its clean relative form.
func cleanName(name string) (string, string) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", "name contains NUL"
	}
	if name == "" {
		return "", "empty name"
	}
	if strings.HasPrefix(name, "/") {
		return "", "absolute path"
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", "path escapes the image root"
	}
	if len(c) > maxPath {
		return "", fmt.Sprintf("name of %d bytes (limit %d, PATH_MAX)", len(c), maxPath)
	}
	for _, comp := range strings.Split(c, "/") {
		if len(comp) > 255 {
			return "", fmt.Sprintf("name component of %d bytes (limit 255)", len(comp))
		}
	}
	return c, ""
}

const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
	whMeta   = ".wh..wh."
)

// layer reads layer li (l) and writes its entries that the layers above leave visible, then
// records what it leaves in view and what it hides for the layers below.
func (f *flattener) layer(li int, l Layer) error {
	if err := f.ctx.Err(); err != nil {
		return err
	}
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Name, err)
	}
	rc = readAhead(f.ctx, rc)
	defer rc.Close()
	s := &layerPass{f: f, li: li, l: l, tr: tar.NewReader(rc), cur: make(map[int32]uint16),
		hiddenLink: make(map[int32]linkTarget)}
	if err := s.entries(); err != nil {
		return err
	}
	// Drain to the blob's EOF so its digest is checked.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return layerReadErr(l.Name, s.prev, err)
	}
	if len(s.promoOrder) > 0 {
		if err := f.promote(l, s.promos, s.promoOrder); err != nil {
			return err
		}
	}
	s.commit()
	return nil
}

// linkTarget is where a hardlink of the layer being read points: the target's node and name.
type linkTarget struct {
	node int32
	name string
}

// layerPass is the state of one read of a layer by (*flattener).layer.
type layerPass struct {
	f    *flattener
	li   int // the layer's index
	l    Layer
	tr   *tar.Reader
	cur  map[int32]uint16 // by path node: the c* flags this layer sets
	prev string           // name of the last entry read, for errors

	hiddenLink map[int32]linkTarget // hidden hardlink (or its target) -> target
	promos     map[string]*promo
	promoOf    map[string]string // promoted or deferred link name -> data holder
	promoOrder []string
}

// unsafe is the error refusing entry of this layer for reason.
func (s *layerPass) unsafe(entry, reason string) error {
	return &UnsafeEntryError{Layer: s.l.Name, Entry: entry, Reason: reason}
}

// entries reads the layer's tar headers up to its end, handling each entry in turn.
func (s *layerPass) entries() error {
	for {
		if err := s.f.ctx.Err(); err != nil {
			return err
		}
		hdr, err := s.tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return headerErr(s.l.Name, s.prev, err)
		}
		s.prev = hdr.Name
		if err := s.entry(hdr); err != nil {
			return err
		}
	}
}

// entry handles one tar entry: checks it, then records it as a whiteout, a hidden entry or a
// hardlink, or writes it out.
func (s *layerPass) entry(hdr *tar.Header) error {
	if skip, err := s.checkHeader(hdr); skip || err != nil {
		return err
	}
	p, why := cleanName(hdr.Name)
	if why != "" {
		return s.unsafe(hdr.Name, why)
	}
	base := path.Base(p)
	isDir := hdr.Typeflag == tar.TypeDir
	if p == "." && !isDir {
		return s.unsafe(hdr.Name, "root is not a directory")
	}
	s.f.nodes = s.f.paths.walk(p, s.f.nodes)
	nodes := s.f.nodes
	pn := nodes[len(nodes)-1]
	if err := s.checkParents(hdr.Name, p, nodes); err != nil {
		return err
	}
	if strings.HasPrefix(base, whPrefix) {
		return s.whiteout(hdr.Name, base, nodes)
	}
	c := s.cur[pn]
	if c&(cDir|cNonDir) != 0 {
		return nil // duplicate in this layer: the first one stays
	}
	if !isDir && c&cParent != 0 {
		return s.unsafe(hdr.Name, "non-directory "+p+" replaces a directory that has entries in the same layer")
	}
	vis := s.f.visible(nodes, isDir)
	if vis {
		for _, a := range nodes[:len(nodes)-1] {
			s.cur[a] |= cParentVis
		}
	}
	c |= entryKind(hdr)
	out := outHeader(hdr, p)
	if hdr.Typeflag == tar.TypeLink {
		if done, err := s.hardlink(hdr, p, pn, c, vis, out); done || err != nil {
			return err
		}
	}
	if !vis {
		s.cur[pn] = c
		return nil
	}
	s.cur[pn] = c | cEmitted
	return s.emit(hdr, out, p)
}

// checkHeader checks an entry's type, numbers and sparse size; skip is true for entries that
// carry nothing for the tree (PAX global headers).
func (s *layerPass) checkHeader(hdr *tar.Header) (skip bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return true, nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return false, s.unsafe(hdr.Name, fmt.Sprintf("unsupported tar entry type %q", hdr.Typeflag))
	}
	if why := checkNumbers(hdr); why != "" {
		return false, s.unsafe(hdr.Name, why)
	}
	return false, s.chargeSparse(hdr)
}

// chargeSparse counts a sparse entry's logical size against the image's MaxSparseBytes budget.
func (s *layerPass) chargeSparse(hdr *tar.Header) error {
	if !isSparse(hdr) {
		return nil
	}
	f := s.f
	if f.sparse += hdr.Size; f.sparse > MaxSparseBytes {
		return s.unsafe(hdr.Name, fmt.Sprintf("sparse file of %d bytes: the sparse files of an image may span at most %d GiB in all (%d bytes so far); their holes are expanded while building, about 100 s of CPU per TiB",
			hdr.Size, MaxSparseBytes>>30, f.sparse))
	}
	return nil
}

// checkParents refuses a whiteout prefix, a symlink or a file of this layer among the
// directories above p, and marks them as parents in this layer.
func (s *layerPass) checkParents(entry, p string, nodes []int32) error {
	return ancestorNames(p, nodes, func(i int, a string) error {
		if strings.HasPrefix(path.Base(a), whPrefix) {
			return s.unsafe(entry, "whiteout prefix in directory name "+a)
		}
		c := s.cur[nodes[i]]
		if c&cSymlink != 0 {
			return s.unsafe(entry, "parent "+a+" is a symlink")
		}
		if c&cNonDir != 0 {
			return s.unsafe(entry, "parent "+a+" is not a directory")
		}
		s.cur[nodes[i]] = c | cParent
		return nil
	})
}

// whiteout records a whiteout entry named base (".wh.NAME" or the opaque marker) found in the
// directory nodes[len(nodes)-2].
func (s *layerPass) whiteout(entry, base string, nodes []int32) error {
	dir := nodes[len(nodes)-2] // a whiteout is never "."
	switch {
	case base == whOpaque:
		s.cur[dir] |= cOpaque
	case strings.HasPrefix(base, whMeta):
		// Other AUFS metadata (.wh..wh.plnk, ...): not part of the tree.
	default:
		t := base[len(whPrefix):]
		if t == "" || t == "." || t == ".." {
			return s.unsafe(entry, "whiteout of "+map[string]string{"": "an empty name", ".": ". (the directory itself)", "..": ".."}[t])
		}
		s.cur[s.f.paths.child(dir, t)] |= cWhiteout
	}
	return nil
}

// entryKind is the c* flags of an entry's own type: a directory, or a non-directory and maybe a
// symlink.
func entryKind(hdr *tar.Header) uint16 {
	if hdr.Typeflag == tar.TypeDir {
		return cDir
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return cNonDir | cSymlink
	}
	return cNonDir
}

// hardlink handles a hardlink entry at p (node pn, flags c so far, out its header to write): a
// hidden link is noted for the links through it; a visible one is held to the end, promoted, or
// pointed at the entry that holds the data. done is true when nothing more is to be done for
// the entry; otherwise out.Linkname is set and the entry is written like any other.
func (s *layerPass) hardlink(hdr *tar.Header, p string, pn int32, c uint16, vis bool, out *tar.Header) (done bool, err error) {
	t, why := cleanName(hdr.Linkname)
	if why != "" {
		return true, s.unsafe(hdr.Name, "hardlink target "+hdr.Linkname+": "+why)
	}
	if t == "." {
		return true, s.unsafe(hdr.Name, "hardlink to a directory")
	}
	s.f.tnodes = s.f.paths.walk(t, s.f.tnodes)
	tnodes := s.f.tnodes
	if err := ancestorNames(t, tnodes, func(i int, a string) error {
		if s.cur[tnodes[i]]&cSymlink != 0 {
			return s.unsafe(hdr.Name, "hardlink target parent "+a+" is a symlink")
		}
		return nil
	}); err != nil {
		return true, err
	}
	tn := tnodes[len(tnodes)-1]
	if s.cur[tn]&(cDir|cParent) != 0 {
		return true, s.unsafe(hdr.Name, "hardlink to a directory")
	}
	if !vis {
		s.hiddenLink[pn] = linkTarget{tn, t}
		s.cur[pn] = c
		return true, nil
	}
	r, err := s.followLinks(hdr.Name, linkTarget{tn, t})
	if err != nil {
		return true, err
	}
	return s.placeLink(hdr.Name, p, pn, c, r, out), nil
}

// followLinks follows hidden links of this layer from tn to the entry that holds the data, then
// points every hidden link passed straight at it: a long chain is walked once, not once for every
// link to it.
func (s *layerPass) followLinks(entry string, tn linkTarget) (linkTarget, error) {
	r := tn
	for n := 0; ; n++ {
		next, ok := s.hiddenLink[r.node]
		if s.cur[r.node]&cEmitted != 0 || !ok {
			break
		}
		if n > len(s.hiddenLink) {
			return linkTarget{}, s.unsafe(entry, "hardlink cycle")
		}
		r = next
		s.f.linkSteps++
	}
	for x := tn.node; x != r.node && s.cur[x]&cEmitted == 0; {
		next, ok := s.hiddenLink[x]
		if !ok {
			break
		}
		s.hiddenLink[x] = r
		x = next.node
		s.f.linkSteps++
	}
	return r, nil
}

// placeLink settles a visible hardlink at p whose data is held by r: held to the end of the
// stream when r is not a file of this layer (or is itself held), or written with r's promoted
// data when r is hidden. It reports false when the link is to be written now, pointing at r.
func (s *layerPass) placeLink(entry, p string, pn int32, c uint16, r linkTarget, out *tar.Header) bool {
	rc := s.cur[r.node]
	switch {
	case rc&cNonDir == 0:
		// Not in this layer: must be a lower layer's file, checked at the end.
		s.hold(entry, out, r, false)
		s.cur[pn] = c | cEmitted | cHeld
	case rc&cHeld != 0:
		s.hold(entry, out, r, true)
		s.cur[pn] = c | cEmitted | cHeld
	case rc&cPromoted != 0:
		pr := s.promos[s.promoOf[r.name]]
		out.Linkname = pr.name
		pr.links = append(pr.links, out)
		s.cur[pn] = c | cEmitted | cPromoted
		s.promoOf[p] = pr.target
	case rc&cEmitted == 0:
		s.promoteLink(p, pn, c, r, out)
	default:
		out.Linkname = r.name
		return false
	}
	return true
}

// hold keeps a hardlink to r back to the end of the stream, when its target is known to be there.
func (s *layerPass) hold(entry string, out *tar.Header, r linkTarget, sameLayer bool) {
	out.Linkname = r.name
	s.f.held = append(s.f.held, heldLink{layer: s.li, lname: s.l.Name, entry: entry, hdr: *out, target: r.name, tnode: r.node, sameLayer: sameLayer})
}

// promoteLink handles a visible link whose data holder r is hidden by an upper layer: the first
// such link gets r's data from a second pass over the layer; the next ones link to it.
func (s *layerPass) promoteLink(p string, pn int32, c uint16, r linkTarget, out *tar.Header) {
	if s.promos == nil {
		s.promos = make(map[string]*promo)
		s.promoOf = make(map[string]string)
	}
	if pr := s.promos[r.name]; pr != nil {
		out.Linkname = pr.name
		pr.links = append(pr.links, out)
		s.cur[pn] = c | cEmitted | cPromoted
		s.promoOf[p] = r.name
		return
	}
	s.promos[r.name] = &promo{target: r.name, name: p}
	s.promoOrder = append(s.promoOrder, r.name)
	s.promoOf[p] = r.name
	s.cur[pn] = c | cEmitted | cPromoted
}

// emit writes a visible entry, named p, and its data.
func (s *layerPass) emit(hdr, out *tar.Header, p string) error {
	if err := s.f.writeHeader(out, s.l.Name); err != nil {
		return fmt.Errorf("layer %s: writing entry %q: %w", s.l.Name, p, err)
	}
	if out.Typeflag == tar.TypeReg && out.Size > 0 {
		if err := s.f.copyData(s.tr); err != nil {
			return layerReadErr(s.l.Name, hdr.Name, err)
		}
	}
	return nil
}

// commit folds this layer's flags into the state the layers below are read against.
func (s *layerPass) commit() {
	f := s.f
	for n, c := range s.cur {
		st := f.up(n)
		if c&cEmitted != 0 {
			if c&cDir != 0 {
				st.f |= sDir
			} else {
				st.f |= sNonDir
				st.layer = int32(s.li)
			}
		}
		if c&cParentVis != 0 {
			st.f |= sImplied
		}
		if c&cWhiteout != 0 {
			st.f |= sWhiteout
		}
		if c&cOpaque != 0 {
			st.f |= sOpaque
		}
		if c&(cWhiteout|cOpaque) != 0 {
			if _, ok := f.hidBy[n]; !ok {
				f.hidBy[n] = int32(s.li)
			}
		}
		if st.f != 0 {
			f.setUp(n, st)
		}
	}
}

func layerReadErr(layer, after string, err error) error {
	var de *DigestError
	if errors.As(err, &de) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if strings.HasPrefix(err.Error(), "layer "+layer+":") {
		return err
	}
	if err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("tar stream truncated: %w", err)
	}
	if after == "" {
		return fmt.Errorf("layer %s: reading tar: %w", layer, err)
	}
	return fmt.Errorf("layer %s: reading tar at entry %q: %w", layer, after, err)
}

// headerErr reports a tar header that could not be read: the entry it belongs to is unknown, so
// the message names the entry before it.
func headerErr(layer, prev string, err error) error {
	e := layerReadErr(layer, "", err)
	if prev == "" || e == err {
		return e
	}
	return fmt.Errorf("%w (in the header after entry %q)", e, prev)
}

func (f *flattener) copyData(r io.Reader) error {
	if f.buf == nil {
		f.buf = make([]byte, 128<<10)
	}
	for {
		n, err := r.Read(f.buf)
		if n > 0 {
			if _, werr := f.tw.Write(f.buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// LayerPAXKey is the PAX record Flatten adds to every entry it emits: the name of the layer the
// entry comes from, so that a consumer refusing an entry (the filesystem writer) can name the layer
// as well as the entry. It is not an xattr and no filesystem stores it.
const LayerPAXKey = "IMGFAB.layer"

// writeHeader writes h tagged with the layer it comes from (LayerPAXKey).
func (f *flattener) writeHeader(h *tar.Header, layer string) error {
	if h.PAXRecords == nil {
		h.PAXRecords = make(map[string]string, 1)
	}
	h.PAXRecords[LayerPAXKey] = layer
	h.Format = tar.FormatPAX
	return f.tw.WriteHeader(h)
}

// paxBasic are PAX keys that restate Header fields; they are dropped from PAXRecords so the cleaned
// name and the header's own values are what the output says.
var paxBasic = map[string]bool{
	"path": true, "linkpath": true, "size": true, "uid": true, "gid": true, "uname": true,
	"gname": true, "mtime": true, "atime": true, "ctime": true, "charset": true, "comment": true,
	"hdrcharset": true,
}

func outHeader(h *tar.Header, name string) *tar.Header {
	o := *h
	o.Name = name
	o.Format = tar.FormatPAX
	o.Xattrs = nil //nolint:staticcheck // deprecated field; its contents are in PAXRecords
	o.PAXRecords = nil
	for k, v := range h.PAXRecords {
		if paxBasic[k] || strings.HasPrefix(k, "GNU.sparse.") {
			continue
		}
		if o.PAXRecords == nil {
			o.PAXRecords = make(map[string]string)
		}
		o.PAXRecords[k] = v
	}
	switch o.Typeflag {
	case tar.TypeRegA, tar.TypeGNUSparse:
		o.Typeflag = tar.TypeReg
	}
	if o.Typeflag != tar.TypeReg {
		o.Size = 0
	}
	if o.Typeflag != tar.TypeSymlink && o.Typeflag != tar.TypeLink {
		o.Linkname = ""
	}
	return &o
}

// promote re-reads layer l and emits, for each promo, the hidden target's entry (and data) under the
// first visible link name, then the further links to it.
func (f *flattener) promote(l Layer, promos map[string]*promo, order []string) error {
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("layer %s: reopening for hardlinks: %w", l.Name, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	left := len(order)
	done := make(map[string]bool)
	prev := ""
	for left > 0 {
		if err := f.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return headerErr(l.Name, prev, err)
		}
		prev = hdr.Name
		p, _ := cleanName(hdr.Name)
		pr := promos[p]
		if pr == nil || done[p] || hdr.Typeflag == tar.TypeDir || hdr.Typeflag == tar.TypeLink {
			continue
		}
		done[p] = true
		left--
		out := outHeader(hdr, pr.name)
		if err := f.writeHeader(out, l.Name); err != nil {
			return fmt.Errorf("layer %s: writing entry %q: %w", l.Name, pr.name, err)
		}
		if out.Typeflag == tar.TypeReg && out.Size > 0 {
			if err := f.copyData(tr); err != nil {
				return layerReadErr(l.Name, hdr.Name, err)
			}
		}
		for _, h := range pr.links {
			if err := f.writeHeader(h, l.Name); err != nil {
				return fmt.Errorf("layer %s: writing entry %q: %w", l.Name, h.Name, err)
			}
		}
	}
	for _, t := range order {
		if !done[t] {
			return fmt.Errorf("layer %s: second pass for hardlinks: entry %q not found", l.Name, t)
		}
	}
	return nil
}
