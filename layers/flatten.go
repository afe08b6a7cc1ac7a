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
		f := &flattener{ctx: ctx, tw: tar.NewWriter(p), upper: make(map[string]pstate), hidBy: make(map[string]int32)}
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
}

type flattener struct {
	ctx    context.Context
	tw     *tar.Writer
	upper  map[string]pstate
	hidBy  map[string]int32 // path -> the topmost layer that whited it out or made it opaque
	held   []heldLink
	buf    []byte
	layers []Layer
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
		st := f.upper[h.target]
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
	hidden := func(p string, what string) string {
		if li, ok := f.hidBy[p]; ok && f.upper[p].f&(sWhiteout|sOpaque) != 0 {
			return fmt.Sprintf("%s: the target %q was %s by layer %s", why, h.target, what, f.layers[li].Name)
		}
		return ""
	}
	// The nearest cause first: the target itself, then its directories from the bottom up.
	if f.upper[h.target].f&sWhiteout != 0 {
		if s := hidden(h.target, "whited out"); s != "" {
			return s
		}
	}
	for d := path.Dir(h.target); ; d = path.Dir(d) {
		st := f.upper[d].f
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
			return fmt.Sprintf("%s: %s is not a directory (layer %s)", why, d, f.layers[f.upper[d].layer].Name)
		}
		if d == "." {
			break
		}
	}
	if st := f.upper[h.target]; st.f&sNonDir != 0 && int(st.layer) >= h.layer {
		if int(st.layer) == h.layer {
			return why + ": it comes after the link in the same layer"
		}
		return fmt.Sprintf("%s: the name is replaced by layer %s, above the link", why, f.layers[st.layer].Name)
	}
	return why
}

// ancestors calls fn for each proper ancestor of the clean relative path p, from "." downwards.
func ancestors(p string, fn func(a string) error) error {
	if p == "." {
		return nil
	}
	if err := fn("."); err != nil {
		return err
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			if err := fn(p[:i]); err != nil {
				return err
			}
		}
	}
	return nil
}

var errHidden = errors.New("hidden")

// visible reports whether an entry of the layer being read at p is seen through the layers above.
func (f *flattener) visible(p string, isDir bool) bool {
	if ancestors(p, func(a string) error {
		if f.upper[a].f&(sWhiteout|sNonDir|sOpaque) != 0 {
			return errHidden
		}
		return nil
	}) != nil {
		return false
	}
	st := f.upper[p].f
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

func (f *flattener) layer(li int, l Layer) error {
	if err := f.ctx.Err(); err != nil {
		return err
	}
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Name, err)
	}
	defer rc.Close()
	cur := make(map[string]uint16)
	tr := tar.NewReader(rc)
	unsafe := func(entry, reason string) error {
		return &UnsafeEntryError{Layer: l.Name, Entry: entry, Reason: reason}
	}
	prev := ""
	hiddenLink := make(map[string]string) // hidden hardlink (or its target) -> target
	var (
		promos     map[string]*promo
		promoOf    map[string]string // promoted or deferred link name -> data holder
		promoOrder []string
	)
	for {
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
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
			tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		default:
			return unsafe(hdr.Name, fmt.Sprintf("unsupported tar entry type %q", hdr.Typeflag))
		}
		if why := checkNumbers(hdr); why != "" {
			return unsafe(hdr.Name, why)
		}
		p, why := cleanName(hdr.Name)
		if why != "" {
			return unsafe(hdr.Name, why)
		}
		base := path.Base(p)
		isDir := hdr.Typeflag == tar.TypeDir
		if p == "." && !isDir {
			return unsafe(hdr.Name, "root is not a directory")
		}
		// Parents: no whiteout prefix, no symlink or file of this layer.
		if err := ancestors(p, func(a string) error {
			if strings.HasPrefix(path.Base(a), whPrefix) {
				return unsafe(hdr.Name, "whiteout prefix in directory name "+a)
			}
			c := cur[a]
			if c&cSymlink != 0 {
				return unsafe(hdr.Name, "parent "+a+" is a symlink")
			}
			if c&cNonDir != 0 {
				return unsafe(hdr.Name, "parent "+a+" is not a directory")
			}
			cur[a] = c | cParent
			return nil
		}); err != nil {
			return err
		}
		// Whiteouts.
		if strings.HasPrefix(base, whPrefix) {
			dir := path.Dir(p)
			switch {
			case base == whOpaque:
				cur[dir] |= cOpaque
			case strings.HasPrefix(base, whMeta):
				// Other AUFS metadata (.wh..wh.plnk, ...): not part of the tree.
			default:
				t := base[len(whPrefix):]
				if t == "" || t == "." || t == ".." {
					return unsafe(hdr.Name, "whiteout of "+map[string]string{"": "an empty name", ".": ". (the directory itself)", "..": ".."}[t])
				}
				cur[path.Join(dir, t)] |= cWhiteout
			}
			continue
		}
		c := cur[p]
		if c&(cDir|cNonDir) != 0 {
			continue // duplicate in this layer: the first one stays
		}
		if !isDir && c&cParent != 0 {
			return unsafe(hdr.Name, "non-directory "+p+" replaces a directory that has entries in the same layer")
		}
		vis := f.visible(p, isDir)
		if vis {
			_ = ancestors(p, func(a string) error { cur[a] |= cParentVis; return nil })
		}
		if isDir {
			c |= cDir
		} else {
			c |= cNonDir
			if hdr.Typeflag == tar.TypeSymlink {
				c |= cSymlink
			}
		}
		out := outHeader(hdr, p)
		if hdr.Typeflag == tar.TypeLink {
			t, why := cleanName(hdr.Linkname)
			if why != "" {
				return unsafe(hdr.Name, "hardlink target "+hdr.Linkname+": "+why)
			}
			if t == "." {
				return unsafe(hdr.Name, "hardlink to a directory")
			}
			if err := ancestors(t, func(a string) error {
				if cur[a]&cSymlink != 0 {
					return unsafe(hdr.Name, "hardlink target parent "+a+" is a symlink")
				}
				return nil
			}); err != nil {
				return err
			}
			tc := cur[t]
			if tc&(cDir|cParent) != 0 {
				return unsafe(hdr.Name, "hardlink to a directory")
			}
			if !vis {
				hiddenLink[p] = t
				cur[p] = c
				continue
			}
			// Follow hidden links of this layer to the entry that holds the data.
			r := t
			for n := 0; cur[r]&cEmitted == 0 && hiddenLink[r] != ""; n++ {
				if n > len(hiddenLink) {
					return unsafe(hdr.Name, "hardlink cycle")
				}
				r = hiddenLink[r]
			}
			rc := cur[r]
			switch {
			case rc&cNonDir == 0:
				// Not in this layer: must be a lower layer's file, checked at the end.
				out.Linkname = r
				f.held = append(f.held, heldLink{layer: li, lname: l.Name, entry: hdr.Name, hdr: *out, target: r})
				cur[p] = c | cEmitted | cHeld
				continue
			case rc&cHeld != 0:
				out.Linkname = r
				f.held = append(f.held, heldLink{layer: li, lname: l.Name, entry: hdr.Name, hdr: *out, target: r, sameLayer: true})
				cur[p] = c | cEmitted | cHeld
				continue
			case rc&cPromoted != 0:
				pr := promos[promoOf[r]]
				out.Linkname = pr.name
				pr.links = append(pr.links, out)
				cur[p] = c | cEmitted | cPromoted
				promoOf[p] = pr.target
				continue
			case rc&cEmitted == 0:
				// The data holder is hidden by an upper layer: this link, the first visible name,
				// gets its data from a second pass over the layer.
				if promos == nil {
					promos = make(map[string]*promo)
					promoOf = make(map[string]string)
				}
				if pr := promos[r]; pr != nil {
					out.Linkname = pr.name
					pr.links = append(pr.links, out)
					cur[p] = c | cEmitted | cPromoted
					promoOf[p] = r
					continue
				}
				promos[r] = &promo{target: r, name: p}
				promoOrder = append(promoOrder, r)
				promoOf[p] = r
				cur[p] = c | cEmitted | cPromoted
				continue
			}
			out.Linkname = r
		}
		if !vis {
			cur[p] = c
			continue
		}
		cur[p] = c | cEmitted
		if err := f.writeHeader(out, l.Name); err != nil {
			return fmt.Errorf("layer %s: writing entry %q: %w", l.Name, p, err)
		}
		if out.Typeflag == tar.TypeReg && out.Size > 0 {
			if err := f.copyData(tr); err != nil {
				return layerReadErr(l.Name, hdr.Name, err)
			}
		}
	}
	// Drain to the blob's EOF so its digest is checked.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return layerReadErr(l.Name, prev, err)
	}
	if len(promoOrder) > 0 {
		if err := f.promote(l, promos, promoOrder); err != nil {
			return err
		}
	}
	for p, c := range cur {
		st := f.upper[p]
		if c&cEmitted != 0 {
			if c&cDir != 0 {
				st.f |= sDir
			} else {
				st.f |= sNonDir
				st.layer = int32(li)
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
			if _, ok := f.hidBy[p]; !ok {
				f.hidBy[p] = int32(li)
			}
		}
		if st.f != 0 {
			f.upper[p] = st
		}
	}
	return nil
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
