package bootloader

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// UKIStubPaths are where the x86-64 systemd EFI stub (package systemd-boot-efi) is looked for, in
// order (Arch gives every architecture's).
var UKIStubPaths = AMD64.stubPaths()

// StubNotFoundError lists where the systemd stub was looked for.
type StubNotFoundError struct{ Looked []string }

func (e *StubNotFoundError) Error() string {
	return "no systemd EFI stub in the image for --uki (install systemd-boot-efi); looked at: /" +
		strings.Join(e.Looked, ", /")
}

// PE/COFF section flags (Microsoft PE/COFF specification §4.1 "Section Flags").
const (
	scnCntCode            = 0x00000020 // IMAGE_SCN_CNT_CODE
	scnCntInitializedData = 0x00000040 // IMAGE_SCN_CNT_INITIALIZED_DATA
	scnMemRead            = 0x40000000 // IMAGE_SCN_MEM_READ
)

// Byte offsets inside the PE/COFF headers, all from the Microsoft PE/COFF specification.
const (
	peSigOffsetAt  = 0x3c // §3.2 "Signature (Image Only)": file offset of "PE\0\0", u32 at 0x3c of the MS-DOS stub
	coffHeaderSize = 20   // §3.3 "COFF File Header (Object and Image)": 20 bytes after the 4-byte signature
	coffNumSecs    = 2    // §3.3: NumberOfSections, u16
	coffSymTab     = 8    // §3.3: PointerToSymbolTable, u32 (deprecated for images, should be 0)
	coffNumSyms    = 12   // §3.3: NumberOfSymbols, u32
	coffOptSize    = 16   // §3.3: SizeOfOptionalHeader, u16
	optSizeOfCode  = 4    // §3.4.1 "Optional Header Standard Fields": SizeOfCode, u32
	optSizeOfInit  = 8    // §3.4.1: SizeOfInitializedData, u32
	optSizeOfImage = 56   // §3.4.2 "Optional Header Windows-Specific Fields" (PE32+): SizeOfImage, u32
	optSizeOfHdrs  = 60   // §3.4.2: SizeOfHeaders, u32
	optCheckSum    = 64   // §3.4.2: CheckSum, u32
	optNumRVA      = 108  // §3.4.2 (PE32+): NumberOfRvaAndSizes, u32
	optDataDirs    = 112  // §3.4.3 "Optional Header Data Directories" (PE32+): 8 bytes each
	dirCertTable   = 4    // §3.4.3: index of the Certificate Table (the Authenticode signature)
	secHeaderSize  = 40   // §4 "Section Table (Section Headers)": 40 bytes each
)

// ukiPart is one section appended to the stub.
type ukiPart struct {
	name  string
	vsize uint32 // VirtualSize
	size  int64  // bytes of content in the file
	chars uint32
	data  []byte                        // small sections
	open  func() (io.ReadCloser, error) // big ones, streamed from the tree
	va    uint32
	raw   uint32 // PointerToRawData
	rsize uint32 // SizeOfRawData (size rounded up to FileAlignment)
}

// uki is a planned Unified Kernel Image: patched stub headers and sections, then the new sections.
type uki struct {
	head  []byte // the stub up to the end of its last section's raw data, patched, padded
	parts []ukiPart
	size  int64
}

// PlanUKI works out the ESP files for a Unified Kernel Image made from the image's systemd stub,
// kernel, initrd, command line (cfg.Options), os-release and kernel version. When the image also has
// systemd-boot, the UKI goes to /EFI/Linux/imgfab-VERSION.efi (a Boot Loader Specification Type #2
// entry, which systemd-boot lists on its own) with systemd-boot at /EFI/BOOT/BOOTX64.EFI and a
// loader.conf whose default is that UKI; otherwise the UKI itself is /EFI/BOOT/BOOTX64.EFI and the
// firmware starts it with no loader. Nothing is read beyond the PE headers until the FileSpec is
// opened; the kernel and initrd are then streamed from the tree.
func PlanUKI(cfg Config) ([]FileSpec, Entry, error) {
	stubPath := ""
	for _, p := range cfg.Arch.stubPaths() {
		if isRegularFile(cfg.Tree, p) {
			stubPath = p
			break
		}
	}
	if stubPath == "" {
		return nil, Entry{}, &StubNotFoundError{Looked: cfg.Arch.stubPaths()}
	}
	if cfg.Kernel.Linux == "" {
		return nil, Entry{}, errors.New("uki: no kernel")
	}
	var loader FileSpec
	haveLoader := false
	for _, p := range cfg.Arch.systemdBootPaths() {
		if l, err := treeFile(cfg.Tree, p, cfg.Arch.RemovableLoader()); err == nil {
			if err := cfg.Arch.checkMachine(cfg.Tree, p, "systemd-boot"); err != nil {
				return nil, Entry{}, err
			}
			loader, haveLoader = l, true
			break
		}
	}
	id := cfg.EntryID
	if id == "" {
		id = "imgfab-" + cfg.Kernel.Version
	}
	if strings.ContainsAny(id, "/\\ \n*?[") {
		return nil, Entry{}, fmt.Errorf("uki: bad entry id %q", id)
	}
	u, err := buildUKI(cfg, stubPath)
	if err != nil {
		return nil, Entry{}, err
	}
	e := Entry{Loader: cfg.Arch.RemovableLoader(), Linux: cfg.Arch.RemovableLoader(), Options: cfg.Options}
	var files []FileSpec
	if haveLoader {
		// Boot Loader Specification, "Type #2 EFI Unified Kernel Images": .efi files in
		// /EFI/Linux/ of the ESP; systemd-boot's entry id is the file name, and loader.conf's
		// `default` is a glob matched against entry ids (loader.conf(5)).
		e.Linux = "/EFI/Linux/" + id + ".efi"
		second := loader
		second.Path = cfg.Arch.systemdBootESP()
		files = append(files, loader, second, u.fileSpec(e.Linux),
			bytesFile("/loader/loader.conf", []byte("default "+id+".efi\ntimeout 0\nconsole-mode keep\neditor no\n")))
	} else {
		files = append(files, u.fileSpec(e.Linux))
	}
	for _, f := range files {
		e.Files = append(e.Files, f.Path)
	}
	return files, e, nil
}

func isRegularFile(tree fs.FS, p string) bool {
	st, err := fs.Stat(tree, p)
	return err == nil && st.Mode().IsRegular()
}

func alignUp32(v, a uint32) uint32 { return (v + a - 1) / a * a }

// buildUKI reads the stub and the kernel's PE header and lays the sections out. ukify's recipe
// (systemd src/ukify/ukify.py, pe_add_sections): each new section's VirtualAddress is the end of
// the previous one rounded up to SectionAlignment and its raw data starts at a multiple of
// FileAlignment. Order: .osrel .cmdline .uname .initrd .linux — the UAPI Unified Kernel Image
// specification ("UKI Components") names the sections and lets them appear in any order (the stub
// finds them by name); .linux goes last because its VirtualSize (the kernel's SizeOfImage) is
// larger than its raw data, so nothing may follow it in memory.
func buildUKI(cfg Config, stubPath string) (*uki, error) {
	st, err := readStub(cfg.Tree, stubPath, cfg.Arch.orDefault())
	if err != nil {
		return nil, err
	}
	parts, err := ukiSections(cfg)
	if err != nil {
		return nil, err
	}
	if err := st.checkRoom(len(parts)); err != nil {
		return nil, err
	}
	end, err := st.layout(parts)
	if err != nil {
		return nil, err
	}
	return &uki{head: st.header(parts, end), parts: parts, size: int64(end.raw)}, nil
}

// peStub is the systemd stub read by buildUKI: its bytes, where its headers sit, and where its
// sections end in the file and in memory.
type peStub struct {
	path           string // in the tree, for errors
	data           []byte
	opt            *pe.OptionalHeader64
	salign, falign uint32 // SectionAlignment, FileAlignment
	coff           int64  // file offset of the COFF file header
	optOff, optLen int64  // file offset and size of the optional header
	secTable       int64  // file offset of the section table
	nsec           int    // the stub's own sections
	rawEnd, vEnd   uint32 // end of the sections' raw data, of their memory (and SizeOfImage)
	firstRaw       uint32 // start of the first section's raw data
}

// readStub reads and checks the stub at stubPath: a PE32+ image of the image's architecture with power-of-two
// alignments and none of the sections a UKI adds.
func readStub(tree fs.FS, stubPath string, arch Arch) (*peStub, error) {
	stub, err := fs.ReadFile(tree, stubPath)
	if err != nil {
		return nil, fmt.Errorf("uki: reading stub /%s: %w", stubPath, err)
	}
	pf, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		return nil, fmt.Errorf("uki: stub /%s is not a PE image: %w", stubPath, err)
	}
	opt, ok := pf.OptionalHeader.(*pe.OptionalHeader64)
	if !ok || pf.Machine != arch.PEMachine {
		return nil, fmt.Errorf("uki: stub /%s is not an %s PE32+ image (%s), but the image is %s (its config's architecture)", stubPath, arch.Machine, MachineName(pf.Machine), arch.Name)
	}
	salign, falign := opt.SectionAlignment, opt.FileAlignment
	if salign == 0 || falign == 0 || salign&(salign-1) != 0 || falign&(falign-1) != 0 {
		return nil, fmt.Errorf("uki: stub alignments SectionAlignment %#x FileAlignment %#x are not powers of two", salign, falign)
	}
	st := &peStub{path: stubPath, data: stub, opt: opt, salign: salign, falign: falign, nsec: len(pf.Sections)}
	peOff := int64(binary.LittleEndian.Uint32(stub[peSigOffsetAt:]))
	st.coff = peOff + 4
	st.optOff = st.coff + coffHeaderSize
	st.optLen = int64(binary.LittleEndian.Uint16(stub[st.coff+coffOptSize:]))
	st.secTable = st.optOff + st.optLen
	if err := st.measure(pf.Sections); err != nil {
		return nil, err
	}
	return st, nil
}

// measure finds where the stub's sections' raw data and memory end, refusing a stub that is
// already a UKI or whose sections run past the file.
func (st *peStub) measure(secs []*pe.Section) error {
	var rawEnd, vEnd uint32
	firstRaw := uint32(len(st.data))
	for _, s := range secs {
		if s.Name == ".linux" || s.Name == ".initrd" || s.Name == ".cmdline" || s.Name == ".osrel" || s.Name == ".uname" {
			return fmt.Errorf("uki: stub /%s already has a %s section (is it a UKI?)", st.path, s.Name)
		}
		if s.Size > 0 {
			rawEnd = max(rawEnd, s.Offset+s.Size)
			firstRaw = min(firstRaw, s.Offset)
		}
		vs := s.VirtualSize // §4: bytes in memory; 0 means SizeOfRawData (object files)
		if vs == 0 {
			vs = s.Size
		}
		vEnd = max(vEnd, s.VirtualAddress+vs)
	}
	vEnd = max(vEnd, st.opt.SizeOfImage)
	if int64(rawEnd) > int64(len(st.data)) {
		return fmt.Errorf("uki: stub /%s: section data ends at %d, beyond the file's %d bytes", st.path, rawEnd, len(st.data))
	}
	st.rawEnd, st.vEnd, st.firstRaw = rawEnd, vEnd, firstRaw
	return nil
}

// ukiSections gathers the new sections, in their order: .osrel, .cmdline and .uname in memory,
// the initrd (if any) and the kernel to be streamed from the tree.
func ukiSections(cfg Config) ([]ukiPart, error) {
	osrel, err := readOSRelease(cfg.Tree)
	if err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	parts := []ukiPart{
		{name: ".osrel", data: osrel},
		{name: ".cmdline", data: []byte(cfg.Options)},
		{name: ".uname", data: []byte(cfg.Kernel.Version)},
	}
	if cfg.Kernel.Initrd != "" {
		st, err := fs.Stat(cfg.Tree, cfg.Kernel.Initrd)
		if err != nil {
			return nil, fmt.Errorf("uki: initrd: %w", err)
		}
		src := cfg.Kernel.Initrd
		parts = append(parts, ukiPart{name: ".initrd", size: st.Size(), open: func() (io.ReadCloser, error) { return cfg.Tree.Open(src) }})
	}
	k, err := readKernel(cfg.Tree, cfg.Arch, cfg.Kernel.Linux)
	if err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	if k.machine == 0 || k.sizeOfImage == 0 {
		return nil, fmt.Errorf("uki: kernel /%s is not an EFI-stub PE32+ image (CONFIG_EFI_STUB)", cfg.Kernel.Linux)
	}
	parts = append(parts, ukiPart{name: ".linux", size: k.size, open: func() (io.ReadCloser, error) { return k.open(cfg.Tree) },
		vsize: uint32(max(int64(k.sizeOfImage), k.size)), chars: scnCntCode | scnMemRead})
	return parts, nil
}

// checkRoom checks that n more section headers fit between the stub's section table and its first
// raw data (ukify fails the same way: it does not move the stub's sections).
func (st *peStub) checkRoom(n int) error {
	hdrEnd := st.secTable + int64(st.nsec+n)*secHeaderSize
	if limit := int64(min(st.firstRaw, st.opt.SizeOfHeaders)); hdrEnd > limit {
		return fmt.Errorf("uki: stub /%s has room for %d more section headers before its first section data at %#x, %d are needed",
			st.path, (limit-st.secTable)/secHeaderSize-int64(st.nsec), limit, n)
	}
	return nil
}

// ukiLayout is where the laid-out sections end, and the bytes they add to the stub's code and
// initialized data.
type ukiLayout struct {
	va, raw          uint32 // end in memory (rounded to SectionAlignment) and in the file
	addCode, addInit uint32
}

// layout fills in each part's size, flags and place: in memory after the stub's sections on
// SectionAlignment, in the file after its raw data on FileAlignment.
func (st *peStub) layout(parts []ukiPart) (ukiLayout, error) {
	va := alignUp32(st.vEnd, st.salign)
	raw := alignUp32(st.rawEnd, st.falign)
	var addCode, addInit uint32
	for i := range parts {
		p := &parts[i]
		if p.data != nil || p.open == nil {
			p.size = int64(len(p.data))
		}
		if p.vsize == 0 {
			p.vsize = uint32(p.size)
		}
		if p.chars == 0 {
			p.chars = scnCntInitializedData | scnMemRead
		}
		if p.size > 1<<32-1-int64(raw) {
			return ukiLayout{}, fmt.Errorf("uki: %s of %d bytes does not fit in a PE image", p.name, p.size)
		}
		p.va, p.raw, p.rsize = va, raw, alignUp32(uint32(p.size), st.falign)
		va = alignUp32(va+max(p.vsize, 1), st.salign)
		raw += p.rsize
		if p.chars&scnCntCode != 0 {
			addCode += p.rsize
		} else {
			addInit += p.rsize
		}
	}
	return ukiLayout{va: va, raw: raw, addCode: addCode, addInit: addInit}, nil
}

// header is the UKI's head: the stub up to its raw data end (a trailing signature or symbol table
// is dropped), padded to FileAlignment, with updated COFF and optional header fields and the new
// section headers.
func (st *peStub) header(parts []ukiPart, end ukiLayout) []byte {
	head := make([]byte, alignUp32(st.rawEnd, st.falign))
	copy(head, st.data[:st.rawEnd])
	le := binary.LittleEndian
	coff, optOff := st.coff, st.optOff
	le.PutUint16(head[coff+coffNumSecs:], uint16(st.nsec+len(parts)))
	if int64(le.Uint32(head[coff+coffSymTab:])) >= int64(st.rawEnd) { // the COFF symbol table was past the sections: dropped
		le.PutUint32(head[coff+coffSymTab:], 0)
		le.PutUint32(head[coff+coffNumSyms:], 0)
	}
	le.PutUint32(head[optOff+optSizeOfCode:], st.opt.SizeOfCode+end.addCode)
	le.PutUint32(head[optOff+optSizeOfInit:], st.opt.SizeOfInitializedData+end.addInit)
	le.PutUint32(head[optOff+optSizeOfImage:], end.va) // end.va is the end of .linux rounded to SectionAlignment
	le.PutUint32(head[optOff+optCheckSum:], 0)
	if n := le.Uint32(head[optOff+optNumRVA:]); n > dirCertTable && optDataDirs+8*(dirCertTable+1) <= st.optLen {
		// The stub's own signature (if any) is not part of the output and no longer valid.
		d := optOff + optDataDirs + 8*dirCertTable
		le.PutUint64(head[d:], 0)
	}
	for i, p := range parts {
		putSectionHeader(head[st.secTable+int64(st.nsec+i)*secHeaderSize:][:secHeaderSize], p)
	}
	return head
}

// putSectionHeader writes p's section header (§4 "Section Table") into h.
func putSectionHeader(h []byte, p ukiPart) {
	le := binary.LittleEndian
	clear(h)
	copy(h[0:8], p.name)          // §4: Name, 8 bytes, NUL-padded
	le.PutUint32(h[8:], p.vsize)  // §4: VirtualSize
	le.PutUint32(h[12:], p.va)    // §4: VirtualAddress
	le.PutUint32(h[16:], p.rsize) // §4: SizeOfRawData
	le.PutUint32(h[20:], p.raw)   // §4: PointerToRawData
	le.PutUint32(h[36:], p.chars) // §4: Characteristics
}

// readOSRelease returns the bytes of the tree's os-release (the .osrel section is the file itself).
func readOSRelease(tree fs.FS) ([]byte, error) {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := fs.ReadFile(tree, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading /%s: %w", p, err)
		}
		return b, nil
	}
	return nil, errors.New("no /etc/os-release or /usr/lib/os-release in the image (.osrel needs one)")
}

// fileSpec returns the UKI as one ESP file whose content is produced on the fly.
func (u *uki) fileSpec(dst string) FileSpec {
	return FileSpec{Path: dst, Size: u.size, Open: func() (io.ReadCloser, error) { return &ukiReader{u: u}, nil }}
}

// ukiReader yields the headers and stub, then each section's content and its padding, opening
// tree files only when reached.
type ukiReader struct {
	u    *uki
	pos  int64 // bytes yielded so far
	part int   // index of the part holding pos, once past head
	cur  io.ReadCloser
	left int64 // content bytes left in cur
	err  error
}

func (r *ukiReader) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n := 0
	for n < len(b) && r.pos < r.u.size {
		var m int
		m, r.err = r.step(b[n:])
		n += m
		r.pos += int64(m)
		if r.err != nil {
			return n, r.err
		}
	}
	if n == 0 && r.pos >= r.u.size {
		return 0, io.EOF
	}
	return n, nil
}

// step yields bytes at r.pos: head, padding (zeros), or section content.
func (r *ukiReader) step(b []byte) (int, error) {
	if r.pos < int64(len(r.u.head)) {
		return copy(b, r.u.head[r.pos:]), nil
	}
	// Which part holds r.pos?
	for r.part < len(r.u.parts) {
		p := &r.u.parts[r.part]
		start, end := int64(p.raw), int64(p.raw)+int64(p.rsize)
		if r.pos >= end {
			if r.cur != nil {
				r.cur.Close()
				r.cur = nil
			}
			r.part++
			continue
		}
		if r.pos < start { // cannot happen: parts are contiguous after head
			return 0, fmt.Errorf("uki: internal layout error at %d", r.pos)
		}
		off := r.pos - start
		if off >= p.size { // padding to FileAlignment
			return copy(b, zeros[:min(int64(len(b)), end-r.pos, int64(len(zeros)))]), nil
		}
		if p.open == nil || p.data != nil {
			return copy(b, p.data[off:]), nil
		}
		if r.cur == nil {
			f, err := p.open()
			if err != nil {
				return 0, fmt.Errorf("uki: %s: %w", p.name, err)
			}
			r.cur, r.left = f, p.size
		}
		m, err := r.cur.Read(b[:min(int64(len(b)), r.left)])
		r.left -= int64(m)
		if err == io.EOF && r.left > 0 {
			return m, fmt.Errorf("uki: %s: file shrank: %d bytes short", p.name, r.left)
		}
		if err != nil && err != io.EOF {
			return m, fmt.Errorf("uki: %s: %w", p.name, err)
		}
		return m, nil
	}
	return 0, io.ErrUnexpectedEOF
}

var zeros [4096]byte

func (r *ukiReader) Close() error {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	return nil
}
