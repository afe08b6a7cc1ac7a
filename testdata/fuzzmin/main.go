// Command fuzzmin minimizes one fuzz target's seed corpus (PKG/testdata/fuzz/TARGET) to the inputs
// that found something and a small set of the others that reaches the same coverage as the whole
// corpus. testdata/fuzzmin.sh runs it for every target; see there and testdata/README.md.
//
//	go run ./testdata/fuzzmin -bin PKG.test -dir ./PKG -target FuzzX [-keep testdata/fuzzmin.keep]
//	    [-work DIR] [-par 2] [-drop FILE]
//
// BIN is the package's test binary built with coverage of the package itself:
// go test -c -cover -covermode=set -coverpkg=./PKG -o PKG.test ./PKG. Run from the module root.
//
//  1. Pinned inputs are kept whatever they cover: those matched by a glob of the keep file (regression
//     inputs and seeds that tests read by name, each with its reason), those whose file name (8
//     characters or more) a commit message touching the corpus or a _test.go file of the package names,
//     and any input that fails today.
//  2. Every other input runs alone (-test.run '^TARGET$/^NAME$', -test.coverprofile), once, its
//     covered blocks cached under WORK by the hash of the binary and of the input. The f.Add seeds run
//     together once: go test always runs them, so what they cover needs no file.
//  3. Two greedy covers of the union of all inputs' blocks, each followed by a pass that drops a kept
//     input (largest first) the others make redundant: inputs by size ascending, kept if they add a
//     block; and inputs by most new blocks first (ties: smaller). The one with fewer bytes wins.
//  4. Check: the whole target runs in one process with the full corpus and in another with only the
//     kept inputs (a mirror of the package directory with symlinks: nothing in the tree moves), and
//     the two sets of covered blocks must be equal, block for block. A target that is not
//     deterministic (a fixture built differently by each process) gets up to 3 runs of each, and
//     what any run of each covers must be equal; the blocks not covered in every run are named.
//     Only then are the dropped paths appended to the -drop file (module-relative, one a line);
//     fuzzmin deletes nothing itself.
//
// The last line printed is a summary: TARGET files before after, bytes before after, coverage
// before after (percent of the package's statements), blocks before after.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type input struct {
	name   string
	size   int64
	pinned string // why it is kept regardless, or ""
	blocks []int  // covered block ids
}

var (
	bin     = flag.String("bin", "", "test binary built with -cover -coverpkg=the package")
	dir     = flag.String("dir", "", "package directory, relative to the module root (./diskfmt)")
	target  = flag.String("target", "", "fuzz target name")
	keep    = flag.String("keep", "testdata/fuzzmin.keep", "keep file: GLOB  # reason, globs relative to the module root")
	work    = flag.String("work", "", "directory for cached per-input coverage (default: a temporary one)")
	par     = flag.Int("par", 2, "test binaries run at once")
	drop    = flag.String("drop", "", "append the dropped inputs' paths to this file")
	timeout = flag.Duration("timeout", 10*time.Minute, "per run")
)

func main() {
	log := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "fuzzmin: "+format+"\n", a...) }
	flag.Parse()
	if *bin == "" || *dir == "" || *target == "" {
		flag.Usage()
		os.Exit(2)
	}
	absBin, err := filepath.Abs(*bin)
	check(err)
	rel := strings.TrimPrefix(path.Clean(filepath.ToSlash(*dir)), "./")
	corpus := filepath.Join(rel, "testdata", "fuzz", *target)
	if *work == "" {
		*work, err = os.MkdirTemp("", "fuzzmin")
		check(err)
		defer os.RemoveAll(*work)
	}
	binHash := hashFile(absBin)
	cache := filepath.Join(*work, "cov", *target)
	check(os.MkdirAll(cache, 0o755))

	// The corpus.
	ents, err := os.ReadDir(corpus)
	check(err)
	var ins []*input
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		check(err)
		ins = append(ins, &input{name: e.Name(), size: fi.Size()})
	}
	if len(ins) == 0 {
		log("%s: empty corpus", corpus)
		return
	}

	// 1. Pins: the keep file, then names in commit messages and tests.
	globs := readKeep(*keep)
	named := namedText(rel, corpus)
	for _, in := range ins {
		p := corpus + "/" + in.name
		for _, g := range globs {
			if ok, _ := path.Match(g.glob, filepath.ToSlash(p)); ok {
				in.pinned = g.reason
				break
			}
		}
		if in.pinned == "" && len(in.name) >= 8 {
			if why, ok := named[in.name]; ok {
				in.pinned = why
			}
		}
	}

	// 2. Coverage: the seeds together, then each input alone (cached).
	prof := newProfiles()
	seeds, _, err := runCover(absBin, rel, "^"+*target+"$/^seed#[0-9]+$", "", prof)
	check(err)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, *par))
	done := 0
	start := time.Now()
	for _, in := range ins {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sum := sha256.Sum256(append([]byte(binHash), readFile(filepath.Join(corpus, in.name))...))
			cf := filepath.Join(cache, hex.EncodeToString(sum[:16]))
			if b, err := os.ReadFile(cf); err == nil {
				mu.Lock()
				in.blocks = prof.ids(strings.Fields(string(b)))
				done++
				mu.Unlock()
				return
			}
			blocks, fail, err := runCover(absBin, rel, "^"+*target+"$/^"+regexp.QuoteMeta(in.name)+"$", *target+"/"+in.name, prof)
			mu.Lock()
			defer mu.Unlock()
			done++
			if done%50 == 0 {
				log("%s: %d/%d inputs (%v)", *target, done, len(ins), time.Since(start).Round(time.Second))
			}
			if err != nil {
				log("%s: %v", in.name, err)
				os.Exit(1)
			}
			if fail {
				log("%s/%s FAILS today: kept", *target, in.name)
				if in.pinned == "" {
					in.pinned = "fails today (a bug not fixed yet)"
				}
			}
			in.blocks = blocks
			if !fail {
				os.WriteFile(cf, []byte(strings.Join(prof.keys(blocks), "\n")), 0o644)
			}
		}()
	}
	wg.Wait()

	// 3. The covers.
	goal := newSet(seeds)
	for _, in := range ins {
		goal.add(in.blocks)
	}
	bySize := cover(ins, seeds, goal, false)
	byGain := cover(ins, seeds, goal, true)
	kept := bySize
	if bytesOf(byGain) < bytesOf(bySize) || bytesOf(byGain) == bytesOf(bySize) && len(byGain) < len(bySize) {
		kept = byGain
	}
	log("%s: by size %d inputs %d bytes, by gain %d inputs %d bytes", *target, len(bySize), bytesOf(bySize), len(byGain), bytesOf(byGain))
	keptSet := map[string]bool{}
	for _, in := range kept {
		keptSet[in.name] = true
	}
	var dropped []string
	for _, in := range ins {
		if !keptSet[in.name] {
			dropped = append(dropped, corpus+"/"+in.name)
		}
	}

	// 4. The check: whole target, full corpus vs kept inputs only.
	mirror := filepath.Join(*work, "mirror", *target)
	check(os.RemoveAll(mirror))
	makeMirror(rel, mirror, *target, keptSet)
	var full, after, flaky []int
	fullU, fullI, afterU, afterI := newSet(nil), (*set)(nil), newSet(nil), (*set)(nil)
	for try := 1; ; try++ {
		f, fail, err := runCover(absBin, rel, "^"+*target+"$", *target, prof)
		check(err)
		if fail {
			log("%s fails with the full corpus: fix that first", *target)
			os.Exit(1)
		}
		a, fail, err := runCover(absBin, mirror, "^"+*target+"$", *target, prof)
		check(err)
		if fail {
			log("%s fails with the kept corpus", *target)
			os.Exit(1)
		}
		fullU.add(f)
		afterU.add(a)
		fullI, afterI = fullI.and(f), afterI.and(a)
		full, after = fullU.ids(), afterU.ids()
		if len(fullU.diff(afterU)) == 0 && len(afterU.diff(fullU)) == 0 {
			flaky = append(fullU.diff(fullI), afterU.diff(afterI)...)
			break
		}
		if try == 3 {
			for _, id := range fullU.diff(afterU) {
				log("%s: block lost: %s", *target, prof.key(id))
			}
			for _, id := range afterU.diff(fullU) {
				log("%s: block gained: %s", *target, prof.key(id))
			}
			log("%s: the kept corpus does not cover what the full one does (3 runs each): nothing dropped", *target)
			os.Exit(1)
		}
		// Not deterministic (each process may build its fixture differently): run both again and
		// compare what each reaches in any run.
		log("%s: full and kept runs differ; again (run %d of 3), comparing what any run covers", *target, try+1)
	}
	if u := newSet(full); len(goal.diff(u)) > 0 || len(u.diff(goal)) > 0 {
		log("%s: note: the whole-target runs cover %d blocks the single runs did not, and miss %d they did", *target, len(u.diff(goal)), len(goal.diff(u)))
	}
	if len(flaky) > 0 {
		seen := map[int]bool{}
		for _, id := range flaky {
			if !seen[id] {
				seen[id] = true
				log("%s: note: not covered in every run (the target is not deterministic): %s", *target, prof.key(id))
			}
		}
	}

	// Report.
	for _, in := range ins {
		if in.pinned != "" {
			fmt.Printf("  keep %s/%s: %s\n", corpus, in.name, in.pinned)
		}
	}
	if *drop != "" && len(dropped) > 0 {
		f, err := os.OpenFile(*drop, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		check(err)
		for _, p := range dropped {
			fmt.Fprintln(f, p)
		}
		check(f.Close())
	}
	fmt.Printf("%s %s files %d %d bytes %d %d coverage %.1f%% %.1f%% blocks %d %d\n", rel, *target,
		len(ins), len(kept), bytesOf(ins), bytesOf(kept), prof.percent(full), prof.percent(after), len(full), len(after))
}

// cover returns the pinned inputs plus a greedy cover of goal (less the seeds' blocks) by the others,
// pruned of inputs that the rest make redundant.
func cover(ins []*input, seeds []int, goal *set, byGain bool) []*input {
	rest := append([]*input(nil), ins...)
	sort.SliceStable(rest, func(i, j int) bool {
		if rest[i].size != rest[j].size {
			return rest[i].size < rest[j].size
		}
		return rest[i].name < rest[j].name
	})
	got := newSet(seeds)
	var kept []*input
	var cand []*input
	for _, in := range rest {
		if in.pinned != "" {
			kept = append(kept, in)
			got.add(in.blocks)
		} else {
			cand = append(cand, in)
		}
	}
	if byGain {
		for got.len() < goal.len() {
			best, bestN := -1, 0
			for i, in := range cand {
				if in == nil {
					continue
				}
				if n := got.newIn(in.blocks); n > bestN {
					best, bestN = i, n
				}
			}
			if best < 0 {
				break
			}
			kept = append(kept, cand[best])
			got.add(cand[best].blocks)
			cand[best] = nil
		}
	} else {
		for _, in := range cand {
			if got.newIn(in.blocks) > 0 {
				kept = append(kept, in)
				got.add(in.blocks)
			}
		}
	}
	// Prune: largest first, drop an unpinned input whose blocks the others all cover.
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].size > kept[j].size })
	count := map[int]int{}
	for _, id := range seeds {
		count[id] = 1 << 30
	}
	for _, in := range kept {
		for _, id := range in.blocks {
			count[id]++
		}
	}
	var out []*input
	for _, in := range kept {
		redundant := in.pinned == ""
		for _, id := range in.blocks {
			if count[id] < 2 {
				redundant = false
				break
			}
		}
		if redundant {
			for _, id := range in.blocks {
				count[id]--
			}
			continue
		}
		out = append(out, in)
	}
	return out
}

func bytesOf(ins []*input) (n int64) {
	for _, in := range ins {
		n += in.size
	}
	return n
}

// runCover runs the test binary in dir with -test.run pattern and returns the covered blocks, and
// whether the run failed. An error means it did not run as asked: the test named want ("" for any)
// did not run, or no profile.
func runCover(bin, dir, pattern, want string, prof *profiles) ([]int, bool, error) {
	out, err := os.CreateTemp("", "fuzzmin-*.cov")
	if err != nil {
		return nil, false, err
	}
	out.Close()
	defer os.Remove(out.Name())
	cmd := exec.Command(bin, "-test.run", pattern, "-test.v", "-test.count=1",
		"-test.timeout", timeout.String(), "-test.coverprofile", out.Name())
	cmd.Dir = dir
	stdout, runErr := cmd.CombinedOutput()
	fail := bytes.Contains(stdout, []byte("--- FAIL"))
	if runErr != nil && !fail {
		return nil, false, fmt.Errorf("%s -test.run %s: %v\n%s", bin, pattern, runErr, tail(stdout))
	}
	if want != "" && !bytes.Contains(stdout, []byte("--- PASS: "+want+" (")) && !fail {
		return nil, false, fmt.Errorf("-test.run %s ran nothing\n%s", pattern, tail(stdout))
	}
	blocks, err := prof.read(out.Name())
	return blocks, fail, err
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return b
}

// profiles numbers coverage blocks ("file:line.col,line.col") and knows their statement counts.
type profiles struct {
	mu    sync.Mutex
	id    map[string]int
	names []string
	stmts []int
}

func newProfiles() *profiles { return &profiles{id: map[string]int{}} }

func (p *profiles) intern(k string, stmts int) int {
	id, ok := p.id[k]
	if !ok {
		id = len(p.names)
		p.id[k] = id
		p.names = append(p.names, k)
		p.stmts = append(p.stmts, stmts)
	} else if stmts >= 0 {
		p.stmts[id] = stmts
	}
	return id
}

// read parses a coverage profile ("mode: set" then "file:l.c,l.c stmts count" lines; a block can
// appear more than once) and returns the ids of the blocks with a count.
func (p *profiles) read(name string) ([]int, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	hit := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || strings.HasPrefix(f[0], "mode:") {
			continue
		}
		stmts, _ := strconv.Atoi(f[1])
		n, _ := strconv.Atoi(f[2])
		id := p.intern(f[0], stmts)
		if n > 0 {
			hit[id] = true
		}
	}
	if len(p.names) == 0 {
		return nil, fmt.Errorf("%s: empty coverage profile", name)
	}
	ids := make([]int, 0, len(hit))
	for id := range hit {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids, nil
}

func (p *profiles) ids(keys []string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]int, len(keys))
	for i, k := range keys {
		ids[i] = p.intern(k, -1)
	}
	return ids
}

func (p *profiles) keys(ids []int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ks := make([]string, len(ids))
	for i, id := range ids {
		ks[i] = p.names[id]
	}
	return ks
}

func (p *profiles) key(id int) string { return p.keys([]int{id})[0] }

func (p *profiles) percent(ids []int) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all, hit int
	for _, s := range p.stmts {
		all += max(s, 0)
	}
	for _, id := range ids {
		hit += max(p.stmts[id], 0)
	}
	if all == 0 {
		return 0
	}
	return 100 * float64(hit) / float64(all)
}

type set struct{ m map[int]bool }

func newSet(ids []int) *set {
	s := &set{map[int]bool{}}
	s.add(ids)
	return s
}
func (s *set) add(ids []int) {
	for _, id := range ids {
		s.m[id] = true
	}
}
func (s *set) len() int { return len(s.m) }
func (s *set) newIn(ids []int) (n int) {
	for _, id := range ids {
		if !s.m[id] {
			n++
		}
	}
	return n
}

// and returns s ∩ ids (ids alone when s is nil).
func (s *set) and(ids []int) *set {
	t := newSet(nil)
	for _, id := range ids {
		if s == nil || s.m[id] {
			t.m[id] = true
		}
	}
	return t
}

func (s *set) ids() []int {
	var d []int
	for id := range s.m {
		d = append(d, id)
	}
	sort.Ints(d)
	return d
}

// diff returns the ids in s and not in t, sorted.
func (s *set) diff(t *set) []int {
	var d []int
	for id := range s.m {
		if !t.m[id] {
			d = append(d, id)
		}
	}
	sort.Ints(d)
	return d
}

type keepGlob struct{ glob, reason string }

// readKeep reads "GLOB  # reason" lines; blank lines and lines starting with # are skipped.
func readKeep(name string) []keepGlob {
	b, err := os.ReadFile(name)
	if os.IsNotExist(err) {
		return nil
	}
	check(err)
	var gs []keepGlob
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		g, reason, _ := strings.Cut(line, "#")
		gs = append(gs, keepGlob{strings.TrimSpace(g), "keep file: " + strings.TrimSpace(reason)})
	}
	return gs
}

// namedText maps each word of the commit messages touching corpus and of the package's _test.go
// files to where it was found.
func namedText(pkg, corpus string) map[string]string {
	words := map[string]string{}
	add := func(text, where string) {
		for _, w := range regexp.MustCompile(`[A-Za-z0-9_.#-]{8,}`).FindAllString(text, -1) {
			for _, part := range append([]string{w}, strings.Split(w, "/")...) {
				if _, ok := words[part]; !ok {
					words[part] = where
				}
			}
		}
	}
	if out, err := exec.Command("git", "log", "--format=%h %s%n%b%x00", "--", corpus).Output(); err == nil {
		for _, msg := range strings.Split(string(out), "\x00") {
			msg = strings.TrimSpace(msg)
			if msg != "" {
				h, _, _ := strings.Cut(msg, " ")
				add(msg, "named by commit "+h)
			}
		}
	}
	// Corpus paths in messages are often written whole: .../FuzzX/abcdef0123456789.
	tests, _ := filepath.Glob(filepath.Join(pkg, "*_test.go"))
	for _, t := range tests {
		add(string(readFile(t)), "named by "+t)
	}
	return words
}

// makeMirror makes dst look like the package directory pkg for the test binary, with only the kept
// inputs in testdata/fuzz/target: symlinks everywhere else.
func makeMirror(pkg, dst, target string, kept map[string]bool) {
	link := func(from, to string) {
		abs, err := filepath.Abs(from)
		check(err)
		check(os.Symlink(abs, to))
	}
	mirrorDir := func(src, dst, except string) {
		check(os.MkdirAll(dst, 0o755))
		ents, err := os.ReadDir(src)
		check(err)
		for _, e := range ents {
			if e.Name() != except {
				link(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
			}
		}
	}
	mirrorDir(pkg, dst, "testdata")
	mirrorDir(filepath.Join(pkg, "testdata"), filepath.Join(dst, "testdata"), "fuzz")
	mirrorDir(filepath.Join(pkg, "testdata", "fuzz"), filepath.Join(dst, "testdata", "fuzz"), target)
	td := filepath.Join(dst, "testdata", "fuzz", target)
	check(os.MkdirAll(td, 0o755))
	for name := range kept {
		link(filepath.Join(pkg, "testdata", "fuzz", target, name), filepath.Join(td, name))
	}
}

func hashFile(name string) string {
	f, err := os.Open(name)
	check(err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	check(err)
	return hex.EncodeToString(h.Sum(nil))
}

func readFile(name string) []byte {
	b, err := os.ReadFile(name)
	check(err)
	return b
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuzzmin:", err)
		os.Exit(1)
	}
}
