package hostile

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Case is one corpus input and the outcome imgfab build must reach.
type Case struct {
	Name string
	What string
	// Make writes the input into dir (which exists and is empty) and returns the build SOURCE and
	// the digests of the image's layers ("sha256:…", bottom first).
	Make func(dir string) (source string, layers []string, err error)
	Args []string // more build flags
	// Err: substrings the error output must hold; empty: the build must succeed.
	Err []string
	// Layer: index of the layer the error must name (its digest), or -1.
	Layer int
	// Checks on the built root filesystem (debugfs -R Cmd): Want must appear in the output.
	Checks []Check
}

// Check is one debugfs request on the root filesystem and a substring of its answer.
type Check struct{ Cmd, Want string }

// NotFound is debugfs' answer for a path that does not exist.
const NotFound = "File not found by ext2_lookup"

func img(ls ...Layer) func(string) (string, []string, error) {
	return Image{Layers: ls}.Write
}

// boot is a layer with the boot files and more entries.
func boot(ents ...E) Layer { return L(append(Boot(), ents...)...) }

func builds(name, what string, mk func(string) (string, []string, error), checks ...Check) Case {
	return Case{Name: name, What: what, Make: mk, Layer: -1, Checks: checks}
}

func fails(name, what string, mk func(string) (string, []string, error), layer int, err ...string) Case {
	return Case{Name: name, What: what, Make: mk, Layer: layer, Err: err}
}

func dev(typ byte, name string, major, minor int64, mode int64) E {
	return E{Hdr: tar.Header{Typeflag: typ, Name: name, Mode: mode, Devmajor: major, Devminor: minor, ModTime: mtime, Format: tar.FormatGNU}}
}

// Cases returns the corpus, in a fixed order.
func Cases() []Case {
	long := func(n int) string { return strings.Repeat("n", n) }
	target := func(n int) string { return "/" + strings.Repeat("t", n-1) }
	return []Case{
		// Path traversal in names.
		fails("name-dotdot", "a file named ../../etc/evil", img(boot(Reg("../../etc/evil", "x"))), 0,
			`"../../etc/evil"`, "escapes the image root"),
		fails("name-absolute", "a file named /etc/evil", img(boot(Reg("/etc/evil", "x"))), 0, `"/etc/evil"`, "absolute path"),
		fails("name-dotdot-inside", "a/../../evil: climbs out after a component", img(boot(Dir("a/"), Reg("a/../../evil", "x"))), 0,
			`"a/../../evil"`, "escapes"),
		fails("gnu-longname-dotdot", "a GNU long name (././@LongLink) of 300 bytes that climbs out",
			img(boot(E{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("d/", 30) + strings.Repeat("../", 80) + "evil",
				Mode: 0o644, ModTime: mtime, Format: tar.FormatGNU}})), 0, "../../../evil", "escapes"),
		fails("pax-path-dotdot", "a PAX path record that climbs out (the ustar name is harmless)",
			img(boot(E{Raw: append(Pax(PaxRecord("path", "x/../../../etc/evil")), RawHeader("harmless", '0', Octal(0), "")...)})), 0,
			"x/../../../etc/evil", "escapes"),
		fails("pax-path-nul", "a PAX path record with a NUL byte",
			img(boot(E{Raw: append(Pax(PaxRecord("path", "etc/ok\x00../../evil")), RawHeader("harmless", '0', Octal(0), "")...)})), 0,
			"invalid tar header", `after entry "usr/lib/systemd/boot/efi/systemd-bootx64.efi"`),
		fails("root-not-dir", `the root "." as a regular file`, img(boot(E{Raw: append(RawHeader(".", '0', Octal(1), ""), Pad([]byte("x"))...)})), 0, "root is not a directory"),
		fails("typeflag-unknown", "an entry of typeflag 'Z'", img(boot(E{Raw: RawHeader("weird", 'Z', Octal(0), "")})), 0,
			`"weird"`, "unsupported tar entry type"),

		// Symlinks: stored, never followed.
		builds("symlink-target-dotdot", "a symlink whose target climbs out: stored as it is, never followed",
			img(boot(Dir("etc/"), Sym("etc/evil", "../../../../etc/shadow"))),
			Check{"stat /etc/evil", `Fast link dest: "../../../../etc/shadow"`}),
		builds("symlink-target-absolute", "a symlink to /etc/shadow: stored as it is",
			img(boot(Sym("shadow", "/etc/shadow"))), Check{"stat /shadow", `Fast link dest: "/etc/shadow"`}),
		builds("symlink-chain", "a -> b -> c -> /etc, c in a lower layer",
			img(boot(Sym("c", "/etc")), L(Sym("a", "b"), Sym("b", "c"))),
			Check{"stat /a", `Fast link dest: "b"`}, Check{"stat /c", `Fast link dest: "/etc"`}),
		builds("symlink-loop", "x -> y -> x and self -> self", img(boot(Sym("x", "y"), Sym("y", "x"), Sym("self", "self"))),
			Check{"stat /self", `Fast link dest: "self"`}, Check{"stat /y", `Fast link dest: "x"`}),
		builds("symlink-4095", "a symlink target of 4,095 bytes (the ext4 limit)", img(boot(Sym("long", target(4095)))),
			Check{"stat /long", "Size: 4095"}, Check{"stat /long", "Type: symlink"}),
		fails("symlink-4096", "a symlink target of 4,096 bytes", img(boot(Sym("toolong", target(4096)))), 0,
			`"toolong"`, "4096 bytes"),
		fails("write-through-symlink", "etc -> /tmp, then etc/passwd in the same layer", img(boot(Sym("etc", "/tmp"), Reg("etc/passwd", "evil"))), 0,
			`"etc/passwd"`, "parent etc is a symlink"),
		fails("write-through-symlink-after", "etc/passwd, then etc -> /tmp in the same layer", img(boot(Reg("etc/passwd", "x"), Sym("etc", "/tmp"))), 0,
			`"etc"`, "replaces a directory"),
		builds("write-through-symlink-across", "etc -> /tmp in layer 1, etc/passwd in layer 2: etc becomes a directory",
			img(boot(Sym("etc", "/tmp"), Dir("tmp/")), L(Reg("etc/passwd", "upper"))),
			Check{"stat /etc", "Type: directory"}, Check{"cat /etc/passwd", "upper"}, Check{"stat /tmp/passwd", NotFound}),

		// Hardlinks.
		fails("hardlink-missing", "a hardlink to a name no layer has", img(boot(Link("x", "nothere"))), 0, `"x"`, "missing name nothere"),
		fails("hardlink-later", "a hardlink to a name that comes later in the same layer", img(boot(Link("a", "b"), Reg("b", "data"))), 0,
			`"a"`, "missing name b"),
		fails("hardlink-outside", "a hardlink to ../../../etc/shadow", img(boot(Link("shadow", "../../../etc/shadow"))), 0,
			`"shadow"`, "escapes"),
		fails("hardlink-absolute", "a hardlink to /etc/shadow", img(boot(Link("shadow", "/etc/shadow"))), 0, `"shadow"`, "absolute path"),
		fails("hardlink-to-dir", "a hardlink to a directory", img(boot(Dir("d/"), Link("l", "d"))), 0, `"l"`, "hardlink to a directory"),
		fails("hardlink-through-symlink", "a hardlink whose target's parent is a symlink of the same layer",
			img(boot(Sym("s", "/etc"), Link("l", "s/passwd"))), 0, `"l"`, "symlink"),
		builds("hardlink-lower", "a hardlink in layer 2 to a file of layer 1", img(boot(Reg("data", "shared")), L(Link("again", "data"))),
			Check{"stat /again", "Links: 2"}, Check{"cat /again", "shared"}),
		// The error must name the layer of the link, the link and its target, not the big file that
		// ends layer 1 (it used to be cut off mid-data by the error).
		fails("hardlink-to-whiteout", "layer 2 whites out a and links l to it; layer 1 ends with a 600 KiB file",
			img(boot(Reg("a", "data"), Reg("zbig", noise(600<<10))), L(Reg(".wh.a", ""), Link("l", "a"))), 1,
			`entry "l"`, `target "a"`, "whited out"),
		fails("hardlink-to-opaque", "layer 2 makes d opaque and links l to d/a of layer 1",
			img(boot(Dir("d/"), Reg("d/a", "data"), Reg("zbig", noise(600<<10))), L(Dir("d/"), Reg("d/.wh..wh..opq", ""), Link("l", "d/a"))), 1,
			`entry "l"`, `target "d/a"`, "opaque directory d"),

		// Whiteouts.
		fails("whiteout-dotdot", "etc/.wh... (a whiteout of ..)", img(boot(), L(Dir("etc/"), Reg("etc/.wh...", ""))), 1, "whiteout of .."),
		fails("whiteout-root", ".wh.. (a whiteout of the root)", img(boot(), L(Reg(".wh..", ""))), 1, "whiteout of ."),
		fails("whiteout-in-dir-name", "a/.wh.b/c: a whiteout name used as a directory", img(boot(), L(Reg("a/.wh.b/c", ""))), 1,
			"whiteout prefix in directory name"),
		builds("whiteout-nonexistent", "etc/.wh.nothere: nothing to hide, nothing written",
			img(boot(Dir("etc/"), Reg("etc/keep", "k")), L(Reg("etc/.wh.nothere", ""))),
			Check{"ls /etc", "keep"}, Check{"stat /etc/.wh.nothere", NotFound}, Check{"stat /etc/nothere", NotFound}),
		builds("whiteout-hides", "etc/.wh.secret hides layer 1's etc/secret",
			img(boot(Dir("etc/"), Reg("etc/secret", "s")), L(Reg("etc/.wh.secret", ""))),
			Check{"stat /etc/secret", NotFound}, Check{"stat /etc/.wh.secret", NotFound}),
		builds("opaque-root", "./.wh..wh..opq hides every lower layer (the boot files come again above)",
			img(L(Reg("lower-only", "x")), boot(Reg(".wh..wh..opq", ""))),
			Check{"stat /lower-only", NotFound}, Check{"stat /.wh..wh..opq", NotFound}),
		builds("many-whiteouts", "5,000 whiteouts of names that do not exist",
			img(boot(), func() Layer {
				var es []E
				for i := 0; i < 5000; i++ {
					es = append(es, Reg("gone/.wh.f"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+itoa(i), ""))
				}
				return L(es...)
			}()), Check{"stat /gone", NotFound}),

		// Duplicates and names.
		builds("duplicate-entries", "etc/dup twice in one layer: the first one stays (documented limit)",
			img(boot(Dir("etc/"), Reg("etc/dup", "first"), Reg("etc/dup", "second"))), Check{"cat /etc/dup", "first"}),
		builds("name-255", "a name component of 255 bytes", img(boot(Reg(long(255), "x"))), Check{"stat /" + long(255), "Size: 1"}),
		fails("name-256", "a name component of 256 bytes", img(boot(Reg(long(256), "x"))), 0, "256 bytes (limit 255)"),
		fails("name-4097", "a name of 4,097 bytes (PATH_MAX is 4,096 with the NUL)",
			img(boot(Reg(strings.Repeat("d/", 2048)+"f", "x"))), 0, "name of 4097 bytes", "PATH_MAX"),
		builds("names-deep", "2,000 names of 4 KiB, 2,040 directories deep, in two trees taken in turn (work linear in the name length)",
			img(boot(), func() Layer {
				var es []E
				for i := 0; i < 2000; i++ {
					es = append(es, Reg([]string{"x", "y"}[i%2]+strings.Repeat("/a", 2040)+"/"+itoa(i), ""))
				}
				return L(es...)
			}()), Check{"stat /x", "Type: directory"}, Check{"stat /y" + strings.Repeat("/a", 2040) + "/1999", "Type: regular"}),

		// Devices.
		fails("device-huge", "a char device with major and minor 2^32-1 (GNU base-256 numbers)",
			img(boot(dev(tar.TypeChar, "dev-huge", 1<<32-1, 1<<32-1, 0o600))), 0, `"dev-huge"`, "cannot encode"),
		fails("device-major-4096", "a block device with major 4096 (ext4 holds 12 bits)",
			img(boot(dev(tar.TypeBlock, "dev-4096", 4096, 0, 0o600))), 0, `"dev-4096"`, "does not fit 12-bit major"),
		builds("device-max", "a block device with the largest numbers ext4 holds (4095:1048575)",
			img(boot(dev(tar.TypeBlock, "dev-max", 4095, 1<<20-1, 0o600))), Check{"stat /dev-max", "4095:1048575"}),
		builds("setuid-device", "a setuid+setgid block device: kept as the image says", img(boot(dev(tar.TypeBlock, "sdev", 8, 0, 0o6660))),
			Check{"stat /sdev", "Mode:  06660"}),

		// Sizes that lie, broken PAX.
		fails("size-1tib", "a header that says 1 TiB, a stream with 10 bytes",
			img(Layer{Blob: Gzip(append(Tar(Boot()...)[:len(Tar(Boot()...))-1024], append(RawHeader("huge", '0', Base256(1<<40), ""), Pad([]byte("0123456789"))...)...))}), 0,
			`"huge"`, "truncated"),
		fails("size-short", "a header that says 10 bytes, 1,000 bytes follow",
			img(Layer{Blob: Gzip(append(Tar(Boot()...)[:len(Tar(Boot()...))-1024], append(RawHeader("short", '0', Octal(10), ""), Pad([]byte(strings.Repeat("A", 1000)))...)...))}), 0,
			"invalid tar header", `after entry "short"`),
		fails("size-negative", "a negative size (base-256)",
			img(Layer{Blob: Gzip(append(Tar(Boot()...)[:len(Tar(Boot()...))-1024], RawHeader("neg", '0', Base256(-1), "")...))}), 0,
			"invalid tar header", "after entry"),
		fails("pax-huge-xattr", "a 70 KiB xattr in a PAX record", img(boot(E{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bigattr", Mode: 0o644,
			ModTime: mtime, PAXRecords: map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 70<<10)}}})), 0,
			`"bigattr"`, "xattr"),
		fails("pax-malformed", "a PAX record whose length is wrong",
			img(boot(E{Raw: append(Pax("99 SCHILY.xattr.user.x=y\n"), RawHeader("after", '0', Octal(0), "")...)})), 0,
			"invalid tar header", "after entry"),
		fails("pax-xattr-namespace", "an xattr in an unknown namespace", img(boot(E{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "nsattr", Mode: 0o644,
			ModTime: mtime, PAXRecords: map[string]string{"SCHILY.xattr.bogus.x": "1"}}})), 0, `"nsattr"`, "namespace"),

		// Numbers the filesystem narrows: refused, never wrapped.
		fails("pax-uid-2^32", "a setuid file with PAX uid=4294967296 (wrapped, it was root)",
			img(boot(num("suid", 0o4755, func(h *tar.Header) { h.Uid = 1 << 32 }))), 0, `"suid"`, "uid 4294967296 out of range"),
		fails("pax-uid-2^32-1", "a file with PAX uid=4294967295 ((uid_t)-1, no id)",
			img(boot(num("noid", 0o644, func(h *tar.Header) { h.Uid = 1<<32 - 1 }))), 0, `"noid"`, "uid 4294967295 out of range"),
		fails("pax-gid-negative", "a setgid file with PAX gid=-1",
			img(boot(num("sgid", 0o2755, func(h *tar.Header) { h.Gid = -1 }))), 0, `"sgid"`, "gid -1 out of range"),
		fails("gnu-uid-base256", "a GNU base-256 uid of 2^40",
			img(boot(num("gnuid", 0o644, func(h *tar.Header) { h.Uid, h.Format = 1<<40, tar.FormatGNU }))), 0, `"gnuid"`, "uid 1099511627776 out of range"),
		builds("uid-max", "uid and gid 4294967294, the largest ids",
			img(boot(num("maxid", 0o644, func(h *tar.Header) { h.Uid, h.Gid = 1<<32-2, 1<<32-2 }))), Check{"stat /maxid", "User:    -2   Group:    -2"}),
		fails("pax-mtime-neg-2^33", "PAX mtime -2^33 (before 1901)",
			img(boot(num("old", 0o644, func(h *tar.Header) { h.ModTime = time.Unix(-1<<33, 0) }))), 0, `"old"`, "mtime -8589934592 out of range", "1901-12-13"),
		fails("pax-mtime-2^40", "PAX mtime 2^40 (year 36812)",
			img(boot(num("future", 0o644, func(h *tar.Header) { h.ModTime = time.Unix(1<<40, 0) }))), 0, `"future"`, "mtime 1099511627776 out of range", "2446-05-10"),
		fails("pax-mtime-neg-2^40", "PAX mtime -2^40",
			img(boot(num("past", 0o644, func(h *tar.Header) { h.ModTime = time.Unix(-1<<40, 0) }))), 0, `"past"`, "mtime -1099511627776 out of range"),
		fails("gnu-mtime-neg-2^33", "a GNU base-256 mtime of -2^33",
			img(boot(num("gnuold", 0o644, func(h *tar.Header) { h.ModTime, h.Format = time.Unix(-1<<33, 0), tar.FormatGNU }))), 0, `"gnuold"`, "mtime -8589934592 out of range"),
		fails("pax-atime-2^40", "PAX atime 2^40",
			img(boot(num("atime", 0o644, func(h *tar.Header) { h.AccessTime = time.Unix(1<<40, 0) }))), 0, `"atime"`, "atime 1099511627776 out of range"),
		fails("pax-ctime-neg-2^33", "PAX ctime -2^33",
			img(boot(num("ctime", 0o644, func(h *tar.Header) { h.ChangeTime = time.Unix(-1<<33, 0) }))), 0, `"ctime"`, "ctime -8589934592 out of range"),
		builds("mtime-range-ends", "mtimes -2^31 and 3*2^32+2^31-1, the ends of what ext4 stores",
			img(boot(num("t-min", 0o644, func(h *tar.Header) { h.ModTime = time.Unix(-1<<31, 0) }),
				num("t-max", 0o644, func(h *tar.Header) { h.ModTime = time.Unix(3<<32+1<<31-1, 0) }))),
			Check{"stat /t-min", "1901"}, Check{"stat /t-max", "2446"}),
		fails("mode-high-bits", "mode 01000755: a bit above the file type bits",
			img(boot(num("highmode", 0o1000755, func(*tar.Header) {}))), 0, `"highmode"`, "mode 01000755 out of range"),
		builds("mode-type-bits", "mode 0100644: the file type bits, as some tar writers put them, are fine",
			img(boot(num("typed", 0o100644, func(*tar.Header) {}))), Check{"stat /typed", "Mode:  0644"}),

		// Digests that are not digests: refused naming the field, never used as a path.
		fails("digest-dotdot", `a layer digest "sha256:../../x"`,
			img(boot(), Layer{Blob: Gzip(Tar(Reg("x", "y"))), Digest: "sha256:../../x"}), -1,
			`manifest layer 1: digest "sha256:../../x": not 64 hex digits`),
		fails("digest-short", `a layer digest "sha256:abc"`,
			img(boot(), Layer{Blob: Gzip(Tar(Reg("x", "y"))), Digest: "sha256:abc"}), -1, `manifest layer 1: digest "sha256:abc"`, "not 64 hex digits"),
		fails("digest-algorithm", "a layer digest of an unknown algorithm",
			img(boot(), Layer{Blob: Gzip(Tar(Reg("x", "y"))), Digest: "md5:d41d8cd98f00b204e9800998ecf8427e"}), -1,
			"manifest layer 1", "unsupported digest algorithm"),
		fails("config-digest-dotdot", `a config digest "sha256:../../../etc/passwd"`,
			func(dir string) (string, []string, error) {
				return Image{Layers: []Layer{boot()}, ConfigDigest: "sha256:../../../etc/passwd"}.Write(dir)
			}, -1, `manifest config: digest "sha256:../../../etc/passwd"`, "not 64 hex digits"),
		fails("diffid-dotdot", `a diff_id "sha256:../x" in the config`,
			img(boot(), Layer{Blob: Gzip(Tar(Reg("x", "y"))), DiffID: "sha256:../x"}), -1,
			`config rootfs.diff_ids[1]: digest "sha256:../x"`, "not 64 hex digits"),
		fails("archive-diffid-dotdot", `a docker-archive whose config has a diff_id "sha256:../../x"`,
			func(dir string) (string, []string, error) {
				return Image{Layers: []Layer{boot(), {Blob: Tar(Reg("x", "y")), DiffID: "sha256:../../x"}}, Archive: true}.Write(dir)
			}, -1, `config rootfs.diff_ids[1]: digest "sha256:../../x"`, "not 64 hex digits"),
		fails("blob-fifo", "a layer blob that is a FIFO: refused, never opened for reading (that would block)",
			func(dir string) (string, []string, error) {
				src, ls, err := img(boot(), L(Reg("x", "y")))(dir)
				if err != nil {
					return "", nil, err
				}
				p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(ls[1], "sha256:"))
				if err := os.Remove(p); err != nil {
					return "", nil, err
				}
				return src, ls, syscall.Mkfifo(p, 0o644)
			}, 1, "not a regular file", "FIFO"),

		// Indexes that name a lot in few bytes: each index is walked once, entries are budgeted.
		fails("index-nested-16x9", "9 levels of indexes, each naming the next 16 times (16^9 paths in a few KiB), no amd64 image",
			Image{Layers: []Layer{boot()}, Arch: "arm64", Nest: 9, FanOut: 16}.Write, -1, "no image for platform linux/amd64", "linux/arm64"),
		builds("index-nested-16x9-found", "the same with an amd64 image at the bottom",
			Image{Layers: []Layer{boot(Reg("deep", "found"))}, Nest: 9, FanOut: 16}.Write, Check{"cat /deep", "found"}),
		fails("index-nested-10", "10 levels of indexes",
			Image{Layers: []Layer{boot()}, Nest: 10, FanOut: 2}.Write, -1, "nested more than 8 deep"),
		fails("index-fanout-1001", "an index of 1,001 entries",
			func(dir string) (string, []string, error) {
				return WriteIndex(dir, func(put func(string, []byte) (map[string]any, error)) ([]map[string]any, error) {
					return fakeManifests(1001, "arm64", 0), nil
				})
			}, -1, "1001 entries, more than the 1000 allowed"),
		fails("index-walk-budget", "an index of 5 indexes of 1,000 arm64 images each: 5,005 entries",
			func(dir string) (string, []string, error) {
				return WriteIndex(dir, func(put func(string, []byte) (map[string]any, error)) ([]map[string]any, error) {
					var out []map[string]any
					for i := 0; i < 5; i++ {
						b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": OCIIndex, "manifests": fakeManifests(1000, "arm64", i)})
						d, err := put(OCIIndex, b)
						if err != nil {
							return nil, err
						}
						out = append(out, d)
					}
					return out, nil
				})
			}, -1, "more than 4096 entries in all"),

		// Many layers: time linear in their number; a blob named again is read once.
		builds("layers-10000", "10,000 small uncompressed layers, each a file and a whiteout of the one below",
			img(manyLayers(10000)...), Check{"cat /d/f9999", "9999"}, Check{"stat /d/f9998", NotFound}),
		builds("layers-2000-archive", "a docker-archive of 2,000 layers",
			Image{Layers: manyLayers(2000), Archive: true}.Write, Check{"cat /d/f1999", "1999"}, Check{"stat /d/f1998", NotFound}),
		builds("layer-repeated", "one 1 MiB layer named 3,000 times in the manifest: read once",
			img(append([]Layer{boot()}, repeat(L(Reg("big", noise(1<<20))), 3000)...)...), Check{"stat /big", "Size: 1048576"}),
		fails("layers-over-limit", "16,385 layers (one small blob named again and again)",
			img(repeat(boot(), 16385)...), -1, "16385 layers, more than the 16384 allowed"),

		// Broken blobs and manifests.
		fails("missing-blob", "the manifest names a layer blob that is not there",
			img(boot(), Layer{Blob: Gzip(Tar(Reg("x", "y"))), Missing: true}), 1, "no such file"),
		fails("digest-mismatch", "a layer blob whose bytes are not its digest",
			img(boot(), func() Layer {
				l := L(Reg("x", "y"))
				l.Digest = digest(Gzip(Tar(Reg("x", "z"))))
				return l
			}()), 1, "digest mismatch"),
		fails("truncated-gzip", "a gzip layer cut in half (digest of the cut bytes)", img(boot(), func() Layer {
			b := Gzip(Tar(Reg("big", strings.Repeat("0123456789abcdef", 8192)), Reg("y", "z")))
			return Layer{Blob: b[:len(b)/2]}
		}()), 1, "truncated"),
		fails("truncated-zstd", "a zstd layer cut in half", img(boot(), func() Layer {
			b := Zstd(Tar(Reg("big", strings.Repeat("0123456789abcdef", 8192)), Reg("y", "z")))
			return Layer{Blob: b[:len(b)/2], MediaType: "application/vnd.oci.image.layer.v1.tar+zstd"}
		}()), 1, "zstd"),
		fails("not-a-tar", "a layer that is plain text", img(boot(), Layer{Blob: []byte(strings.Repeat("this is not a tar archive\n", 40))}), 1,
			"reading tar"),
		fails("gzip-not-tar", "a gzip layer whose content is not a tar", img(boot(), Layer{Blob: Gzip([]byte(strings.Repeat("not a tar\n", 100)))}), 1,
			"reading tar"),
		fails("layer-foreign-type", "a layer of a foreign (Windows) media type",
			img(boot(), Layer{Blob: Gzip(Tar(Reg("x", "y"))), MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}), -1,
			"unsupported layer media type"),
		fails("config-unknown-type", "a config blob of an unknown media type",
			func(dir string) (string, []string, error) {
				return Image{Layers: []Layer{boot()}, ConfigType: "application/x-not-a-config"}.Write(dir)
			}, -1, "application/x-not-a-config"),
		fails("index-no-platform", "an index with only a linux/arm64 image",
			func(dir string) (string, []string, error) {
				return Image{Layers: []Layer{boot()}, Arch: "arm64", Index: true}.Write(dir)
			}, -1, "no image for platform linux/amd64", "linux/arm64"),
		func() Case {
			c := fails("bigger-than-size", "6 MiB of content and --size 4MiB",
				img(boot(Reg("big", noise(6<<20)))), 0, "--size 4 MiB is too small")
			c.Args = []string{"--size", "4MiB", "--esp-size", "1MiB"}
			return c
		}(),
	}
}

// num is a regular file entry whose header fields f sets (PAX unless f says otherwise).
func num(name string, mode int64, f func(*tar.Header)) E {
	h := tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, ModTime: mtime, Format: tar.FormatPAX}
	f(&h)
	return E{Hdr: h}
}

// manyLayers is n layers, uncompressed: the boot files, then one file d/fI each, with a whiteout
// of the file of the layer below.
func manyLayers(n int) []Layer {
	ls := []Layer{boot()}
	for i := 1; i < n; i++ {
		ls = append(ls, Layer{Blob: Tar(Dir("d/"), Reg("d/f"+itoa(i), itoa(i)), Reg("d/.wh.f"+itoa(i-1), "")),
			MediaType: "application/vnd.oci.image.layer.v1.tar"})
	}
	return ls
}

func repeat(l Layer, n int) []Layer {
	ls := make([]Layer, n)
	for i := range ls {
		ls[i] = l
	}
	return ls
}

// fakeManifests is n index entries naming image manifests for linux/arch that are not there (a
// walk that does not pick them never fetches them); seed makes the entries of one call unique.
func fakeManifests(n int, arch string, seed int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{"mediaType": OCIManifest, "digest": digest([]byte(itoa(seed) + "/" + itoa(i))), "size": 500,
			"platform": map[string]string{"os": "linux", "architecture": arch}}
	}
	return out
}

// noise is n bytes that do not compress much and are not zero.
func noise(n int) string {
	b := make([]byte, n)
	x := uint32(7)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x>>24) | 1
	}
	return string(b)
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}
