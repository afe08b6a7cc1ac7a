package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits of a class file. They are far above any real file and keep a hostile one from
// costing more than a little memory and time.
const (
	MaxFileSize = 1 << 20 // bytes of YAML
	MaxClasses  = 256     // classes in one file
	MaxItems    = 4096    // items in one list (files, users, keys, outputs, …)
	// maxNodes bounds the values decoded, aliases expanded: a few aliases of a large anchor
	// cannot make the decoder walk more than this.
	maxNodes = 1 << 18
	// maxDepth bounds the nesting of the YAML itself; the schema needs 6 levels.
	maxDepth = 64
)

// Load reads and parses the class file at path. Relative paths in it are resolved against the
// file's directory, and positions name path as given.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses a class file. name is used in positions and its directory (made absolute
// against the working directory) is where relative paths in the file are resolved. The error
// is an *Error, naming the position, the value's path and what was expected.
func Parse(name string, data []byte) (f *File, err error) {
	dir, aerr := filepath.Abs(filepath.Dir(name))
	if aerr != nil {
		return nil, &Error{Pos: Pos{File: name}, Msg: aerr.Error()}
	}
	d := &decoder{file: name, dir: dir}
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(*Error)
			if !ok {
				panic(r)
			}
			f, err = nil, e
		}
	}()
	if len(data) > MaxFileSize {
		d.failAt(Pos{File: name, Line: 1, Col: 1}, "", "the file has more than %d bytes (%d MiB), the most a class file may have", MaxFileSize, MaxFileSize>>20)
	}
	root := d.document(data)
	f = &File{Name: name, Dir: dir, byName: map[string]*Class{}}
	d.file1(root, f)
	return f, nil
}

type decoder struct {
	file  string
	dir   string
	nodes int
}

func (d *decoder) pos(n *yaml.Node) Pos { return Pos{File: d.file, Line: n.Line, Col: n.Column} }

func (d *decoder) failAt(p Pos, path, format string, args ...any) {
	panic(&Error{Pos: p, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.failAt(d.pos(n), path, format, args...)
}

// document reads the YAML into a node tree: exactly one document whose root is a mapping.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.failAt(Pos{File: d.file, Line: 1, Col: 1}, "", "empty file: want a mapping with the key classes")
		}
		d.failAt(syntaxPos(d.file, data, err), "", "%s", yamlErrMsg(err))
	}
	var extra yaml.Node
	if err := decode(dec, &extra); err == nil {
		d.fail(&extra, "", "a second YAML document (after ---): a class file is one document")
	} else if !errors.Is(err, io.EOF) {
		d.failAt(syntaxPos(d.file, data, err), "", "%s", yamlErrMsg(err))
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		d.failAt(Pos{File: d.file, Line: 1, Col: 1}, "", "want a mapping with the key classes")
	}
	d.depth(doc.Content[0], 0)
	return doc.Content[0]
}

// depth refuses YAML nested deeper than maxDepth before anything walks it.
func (d *decoder) depth(n *yaml.Node, level int) {
	if level > maxDepth {
		d.fail(n, "", "nested more than %d levels deep", maxDepth)
	}
	for _, c := range n.Content {
		d.depth(c, level+1)
	}
}

// parserErrors are the messages of yaml.v3's parser (not its scanner), whose "line N" counts
// from 0: the line where the unfinished mapping, list or document began.
var parserErrors = []string{
	"did not find expected <document start>", "did not find expected key",
	"did not find expected node content", "did not find expected '-' indicator",
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
}

// yamlErrPos digs the line out of a yaml.v3 syntax error ("yaml: line 3: …"). yaml.v3 gives
// no column, so the column is 1, and no line for one on the first line.
func yamlErrPos(file string, err error) Pos {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return Pos{File: file, Line: 1, Col: 1}
	}
	num, text, _ := strings.Cut(rest, ": ")
	n, e := strconv.Atoi(num)
	if e != nil || n < 0 {
		return Pos{File: file, Line: 1, Col: 1}
	}
	if slices.Contains(parserErrors, text) {
		n++
	}
	return Pos{File: file, Line: max(n, 1), Col: 1}
}

// syntaxPos finds the line of a YAML syntax error. yaml.v3 names the line where the unfinished
// mapping or list began, so the lines from there on are added one at a time until a prefix of
// the file fails with the same message; that line is the one that broke it. The prefixes
// parsed are bounded to 16 MiB in all; past that the line yaml.v3 named stands.
func syntaxPos(file string, data []byte, err error) Pos {
	p := yamlErrPos(file, err)
	want := yamlErrMsg(err)
	lines := bytes.SplitAfter(data, []byte("\n"))
	end := 0
	for i := 0; i < p.Line-1 && i < len(lines); i++ {
		end += len(lines[i])
	}
	budget := 16 << 20
	for k := p.Line; k <= len(lines) && budget > 0; k++ {
		end += len(lines[k-1])
		budget -= end
		if e := decodeAll(data[:end]); e != nil && yamlErrMsg(e) == want {
			return Pos{File: file, Line: k, Col: 1}
		}
	}
	return p
}

// decode is dec.Decode with a panic in the YAML library turned into an error.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the YAML library failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// decodeAll parses every document of data and returns the first error.
func decodeAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := decode(dec, &n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func yamlErrMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
	}
	return "not valid YAML: " + msg
}

// value follows aliases and counts the node against maxNodes.
func (d *decoder) value(n *yaml.Node, path string) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode; i++ {
		if n.Alias == nil || i > 100 {
			d.fail(n, path, "an alias that does not resolve")
		}
		n = n.Alias
	}
	d.nodes++
	if d.nodes > maxNodes {
		d.fail(n, path, "more than %d values with aliases expanded", maxNodes)
	}
	return n
}

// describe names a node's kind and value for "got …" in a message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias (*" + n.Value + ")"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("the string %q", v)
		case "!!int":
			return "the integer " + v
		case "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), v)
	}
	return "an unknown node"
}

type field struct {
	key, val *yaml.Node
}

// fields checks that n is a mapping of known string keys, each once, and returns them. refuse,
// when not nil, gives a message for a key that is refused outright (a plain password, a
// credential); it is asked before the key is looked up in known.
func (d *decoder) fields(n *yaml.Node, path string, known []string, refuse func(key string) string) map[string]field {
	n = d.value(n, path)
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping with the keys %s, got %s", strings.Join(known, ", "), describe(n))
	}
	m := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			if k.ShortTag() == "!!merge" {
				d.fail(k, path, "merge keys (<<) are not supported: write the keys out")
			}
			d.fail(k, path, "want a string key, got %s", describe(k))
		}
		if first, dup := m[k.Value]; dup {
			d.fail(k, path, "duplicate key %q (first at line %d, column %d)", k.Value, first.key.Line, first.key.Column)
		}
		if refuse != nil {
			if msg := refuse(k.Value); msg != "" {
				d.fail(k, path, "%s", msg)
			}
		}
		if known != nil && !slices.Contains(known, k.Value) {
			d.fail(k, path, "unknown key %q (known: %s)", k.Value, strings.Join(known, ", "))
		}
		m[k.Value] = field{k, v}
	}
	return m
}

// list checks that n is a sequence of at most MaxItems values and returns them, aliases
// followed.
func (d *decoder) list(n *yaml.Node, path, what string) []*yaml.Node {
	n = d.value(n, path)
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list of %s, got %s", what, describe(n))
	}
	if len(n.Content) > MaxItems {
		d.fail(n, path, "%d items, more than the %d allowed", len(n.Content), MaxItems)
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = d.value(c, fmt.Sprintf("%s[%d]", path, i))
	}
	return out
}

func (d *decoder) str(n *yaml.Node, path string) string {
	n = d.value(n, path)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.fail(n, path, "want a string, got %s", describe(n))
	}
	return n.Value
}

func (d *decoder) boolean(n *yaml.Node, path string) bool {
	n = d.value(n, path)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			return b
		}
	}
	d.fail(n, path, "want true or false, got %s", describe(n))
	return false
}

// integer reads an integer in [lo, hi].
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64, want string) int64 {
	n = d.value(n, path)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.fail(n, path, "want %s, got %s", want, describe(n))
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < lo || v > hi {
		d.fail(n, path, "want %s, got %s", want, n.Value)
	}
	return v
}

// strings reads a list of strings, each checked by check (which returns a message, or "").
func (d *decoder) strs(n *yaml.Node, path, what string, check func(string) string) ([]string, []Pos) {
	items := d.list(n, path, what)
	out := make([]string, len(items))
	pos := make([]Pos, len(items))
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", path, i)
		s := d.str(it, p)
		if check != nil {
			if msg := check(s); msg != "" {
				d.fail(it, p, "%s", msg)
			}
		}
		out[i], pos[i] = s, d.pos(it)
	}
	return out, pos
}

// abs makes a path written in the file absolute against the file's directory.
func (d *decoder) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.dir, p)
}
