// Package spec reads imgfab class files (imgfab.yaml): one or more named classes, each an image
// built from a source container image, with what goes on top of it (layers, files,
// directories, users, groups, hostname, time zone, systemd units), the disk's shape (boot
// chain, sizes, extra partitions, a read-only root under dm-verity, Secure Boot signing) and
// where the result goes (outputs, publish targets).
// docs/CLASSFILE.md is the reference of every key.
//
// Parse is strict. The YAML (go.yaml.in/yaml/v3) is decoded through yaml.Node, never into a
// map, so every problem is an *Error naming file:line:col, the dotted path of the value
// ("classes.web.users[0].uid") and what was expected: an unknown key (with the known ones), a
// value of the wrong type, a key or class given twice, a value out of range or of the wrong
// shape, and what only shows across values (two files at one path, a uid used twice, two
// outputs that name the same file once {class}, {platform} and {arch} are filled in). What can
// only be checked against the image (a unit that must exist, a time zone, a uid clash with
// the image's /etc/passwd) is checked at build time; for that, every list item and value that
// can fail then keeps its Pos, and Errorf makes an error in the same form. A YAML syntax error
// has column 1 (yaml.v3 reports lines only) and the line found by re-reading growing prefixes
// of the file from where yaml.v3 says the broken mapping began; when that costs more than
// 16 MiB of parsing, the position is that beginning.
//
// A parsed Class gives its outputs per platform (Expand, ExpandPublish), a canonical form
// (Canonical: sorted-key JSON with the defaults filled in, whose sha256 identifies the class),
// and File.YAML prints a file back (Parse(YAML(f)) is f, positions apart).
//
// # Limits
//
// A file has at most MaxFileSize (1 MiB) bytes, MaxClasses (256) classes and MaxItems (4096)
// items in any one list; its YAML nests at most 64 levels; anchors and aliases may be used but
// the values decoded with aliases expanded are bounded (262144), so a small file cannot make
// the decoder do unbounded work. Merge keys (<<) and multiple documents are refused. The
// schema has no free-form maps: a key that is not in the reference is an error.
//
// # Security
//
// A class file holds no secrets and may be kept in version control. A key named password (or
// passwd) in a user is refused with a pointer to password_hash, which must be a crypt(3)
// hash or a lock ("!", "*"); publish targets refuse any key that looks like a credential
// (secret, token, password, access_key, storage_key, …): `imgfab push` takes credentials
// from the environment and the cloud SDKs' configuration only. Values that end up in
// /etc/passwd, /etc/shadow, /etc/group or /etc/fstab are checked so that they cannot add a
// field or a line (no ':', ',' or newline where those files would split on them). Paths in the
// image are absolute and clean with no "..", so a file entry cannot escape the image's root;
// paths on the build host (layers, sources, outputs) are relative to the class file and are
// the operator's to choose, as on the command line. secure_boot names the files of the signing
// key, its certificate and the keys to enroll, never their contents: the private key stays in
// its file. Parse reads nothing but the bytes it is given: sources, layers and those files are
// only resolved to absolute paths, not opened.
package spec
