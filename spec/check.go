package spec

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgfab/imgfab/diskfmt"
)

// The checks return "" for a good value, else what is wrong and what is wanted.

func checkClassName(s string) string {
	if len(s) == 0 || len(s) > 63 || !isAlnum(s[0]) || strings.TrimFunc(s, func(r rune) bool {
		return r < 128 && (isAlnum(byte(r)) || r == '-' || r == '_')
	}) != "" {
		return fmt.Sprintf("class name %q: want 1 to 63 letters, digits, '-' or '_', starting with a letter or digit", s)
	}
	return ""
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

const sourceWant = "want oci:DIR[:TAG], docker-archive:FILE, docker://REF or REF"

// checkSource checks a from: value and returns it with a relative local path made absolute
// by abs.
func checkSource(s string, abs func(string) string) (string, string) {
	if strings.TrimSpace(s) == "" {
		return "", "empty: " + sourceWant
	}
	if hasControl(s) || strings.TrimSpace(s) != s {
		return "", fmt.Sprintf("%q has spaces or control characters at its ends or inside: %s", s, sourceWant)
	}
	for _, pre := range []string{"oci:", "docker-archive:"} {
		if rest, ok := strings.CutPrefix(s, pre); ok {
			if rest == "" || strings.HasPrefix(rest, ":") {
				return "", fmt.Sprintf("%q names no path: %s", s, sourceWant)
			}
			return pre + abs(rest), ""
		}
	}
	if strings.HasPrefix(s, "dir:") || strings.HasPrefix(s, "tar:") {
		return "", fmt.Sprintf("%q: dir: and tar: are layers, not images (put them in layers:); %s", s, sourceWant)
	}
	ref := strings.TrimPrefix(s, "docker://")
	if _, err := name.ParseReference(ref); err != nil {
		hint := ""
		if strings.HasPrefix(ref, ".") || strings.HasPrefix(ref, "/") {
			hint = " (a local OCI layout is oci:" + ref + ")"
		}
		return "", fmt.Sprintf("%q is not an image reference%s: %s", ref, hint, sourceWant)
	}
	return s, ""
}

const platformWant = "want os/arch[/variant] with os linux and arch amd64 or arm64, e.g. linux/amd64, linux/arm64/v8"

func parsePlatform(s string) (Platform, string) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, fmt.Sprintf("platform %q: %s", s, platformWant)
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	if p.OS != "linux" {
		return Platform{}, fmt.Sprintf("platform %q: os %q: imgfab builds linux images only; %s", s, p.OS, platformWant)
	}
	variants, ok := map[string][]string{"amd64": {"v1", "v2", "v3", "v4"}, "arm64": {"v8"}}[p.Arch]
	if !ok {
		return Platform{}, fmt.Sprintf("platform %q: unknown arch %q; %s", s, p.Arch, platformWant)
	}
	if len(parts) == 3 && !slices.Contains(variants, p.Variant) {
		return Platform{}, fmt.Sprintf("platform %q: variant %q: want one of %s for %s", s, p.Variant, strings.Join(variants, ", "), p.Arch)
	}
	return p, ""
}

// checkLocalPath checks a path on the build host (a layer, a file's source).
func checkLocalPath(s string) string {
	if s == "" {
		return "empty: want a path, relative to the class file's directory or absolute"
	}
	if hasControl(s) {
		return fmt.Sprintf("%q has control characters: want a path", s)
	}
	return ""
}

// maxCmdline leaves room in Linux's 2048-byte command line for the root= and rw that imgfab
// puts first.
const maxCmdline = 1900

func checkCmdline(s string) string {
	if hasControl(s) {
		return "has control characters (a newline?): want one line of kernel parameters"
	}
	if len(s) > maxCmdline {
		return fmt.Sprintf("%d bytes: want at most %d (Linux takes 2048 with the root= imgfab adds)", len(s), maxCmdline)
	}
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "root=") {
			return fmt.Sprintf("%q: imgfab writes root=PARTUUID=… itself; leave root= out", f)
		}
	}
	return ""
}

// ParseSize reads a size as `imgfab build --size` does: a number of bytes, or a number (a
// fraction too) followed by a binary unit: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB, P/PB/PiB or
// E/EB/EiB, any case (G, GB and GiB are all 2^30, as qemu-img and truncate read them).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.ContainsFunc(t, func(r rune) bool { return r >= 0x80 }) {
		return 0, fmt.Errorf("want a size such as 4GiB or 512MiB, got %q", s)
	}
	up := strings.ToUpper(t)
	mult := 1.0
	for i, u := range []string{"K", "M", "G", "T", "P", "E"} {
		if unit, ok := cutAnySuffix(up, u+"IB", u, u+"B"); ok {
			t, mult = strings.TrimSpace(t[:len(unit)]), math.Ldexp(1, 10*(i+1))
			break
		}
	}
	if mult == 1 && strings.HasSuffix(up, "B") {
		t = strings.TrimSpace(t[:len(t)-1])
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || n < 0 || math.IsNaN(n) {
		return 0, fmt.Errorf("want a size such as 4GiB or 512MiB (units B, KiB, MiB, GiB, TiB; K, M, G, T alike), got %q", s)
	}
	v := n * mult
	if v >= 1<<62 {
		return 0, fmt.Errorf("size %q is too large (at most 4 EiB)", s)
	}
	return int64(v), nil
}

// cutAnySuffix returns s without the first of the suffixes it ends with.
func cutAnySuffix(s string, suffixes ...string) (string, bool) {
	for _, suf := range suffixes {
		if rest, ok := strings.CutSuffix(s, suf); ok {
			return rest, true
		}
	}
	return s, false
}

// formatSize writes n in the largest binary unit that divides it, for YAML.
func formatSize(n int64) string {
	for _, u := range []struct {
		s     string
		shift uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

func parseMode(s string) (uint32, bool) {
	if len(s) < 3 || len(s) > 4 || strings.Trim(s, "01234567") != "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 8, 32)
	return uint32(v), err == nil
}

func formatMode(m uint32) string { return fmt.Sprintf("%04o", m) }

const ownerWant = `want "user:group", each a name or a number, e.g. "0:0", "ops:ops", "1500:100"`

func parseOwner(s string) (Owner, string) {
	u, g, ok := strings.Cut(s, ":")
	if !ok {
		return Owner{}, fmt.Sprintf("%q: %s", s, ownerWant)
	}
	for _, part := range []string{u, g} {
		if part != "" && strings.Trim(part, "0123456789") == "" {
			if v, err := strconv.ParseUint(part, 10, 32); err != nil || v > 1<<32-2 {
				return Owner{}, fmt.Sprintf("%q: id %s is out of range (0 to 4294967294)", s, part)
			}
			continue
		}
		if checkAccountName(part) != "" {
			return Owner{}, fmt.Sprintf("%q: %s", s, ownerWant)
		}
	}
	return Owner{User: u, Group: g}, ""
}

// checkImagePath checks a path in the image (a file or directory to write).
func checkImagePath(s string) string {
	switch {
	case s == "":
		return "empty: want an absolute path in the image, e.g. /etc/motd"
	case slices.Contains(strings.Split(s, "/"), ".."):
		return fmt.Sprintf("%q has a .. component: want an absolute path in the image without ..", s)
	case !strings.HasPrefix(s, "/"):
		return fmt.Sprintf("%q is relative: want an absolute path in the image, e.g. /etc/motd", s)
	case s == "/":
		return `"/" is the root itself: want a path below it`
	case path.Clean(s) != s:
		return fmt.Sprintf("%q is not clean: want %q", s, path.Clean(s))
	case hasControl(s):
		return fmt.Sprintf("%q has control characters", s)
	case len(s) > 4095:
		return "longer than 4095 bytes (PATH_MAX)"
	}
	return ""
}

const accountWant = "want 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or '_' (a trailing '$' allowed)"

func checkAccountName(s string) string {
	t := strings.TrimSuffix(s, "$")
	if t == "" || len(s) > 32 || !(t[0] >= 'a' && t[0] <= 'z' || t[0] == '_') ||
		strings.TrimFunc(t, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' }) != "" {
		return fmt.Sprintf("name %q: %s", s, accountWant)
	}
	return ""
}

// checkAccountPath checks a shell or home directory: it goes into a colon-separated passwd line.
func checkAccountPath(s string) string {
	if msg := checkImagePath(s); msg != "" && s != "/" {
		return msg
	}
	if strings.ContainsAny(s, ":,") {
		return fmt.Sprintf("%q has ':' or ',', which /etc/passwd cannot hold", s)
	}
	return ""
}

// sshKeyTypes are the public key types OpenSSH accepts in authorized_keys (DSA is gone since
// OpenSSH 9.8).
var sshKeyTypes = []string{
	"ssh-ed25519", "ssh-rsa",
	"ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}

// checkSSHKey checks an authorized_keys line "TYPE BASE64 [COMMENT]": a known type, and base64
// that decodes to a key blob of that type.
func checkSSHKey(s string) string {
	if hasControl(s) {
		return "has a newline or control characters: want one key a line, e.g. \"ssh-ed25519 AAAAC3… user@host\""
	}
	f := strings.Fields(s)
	if len(f) < 2 {
		return fmt.Sprintf("%q: want an OpenSSH public key line \"TYPE BASE64 [COMMENT]\", e.g. \"ssh-ed25519 AAAAC3… user@host\"", clip(s))
	}
	if !slices.Contains(sshKeyTypes, f[0]) {
		if f[0] == "ssh-dss" {
			return "ssh-dss (DSA) keys are refused by OpenSSH 9.8 and later: use an ed25519 key"
		}
		return fmt.Sprintf("unknown key type %q (known: %s); options before the key are not supported", clip(f[0]), strings.Join(sshKeyTypes, ", "))
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(blob) < 4 {
		return fmt.Sprintf("the key of type %s is not base64: want the second field as ssh-keygen writes it", f[0])
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) || string(blob[4:4+n]) != f[0] {
		return fmt.Sprintf("the base64 key does not hold a %s key (a truncated or mixed-up key?)", f[0])
	}
	return ""
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// checkPasswordHash checks a shadow password field: "!" or "*" (locked), a crypt(3) hash
// "$id$…", or "!" before one.
func checkPasswordHash(s string) string {
	const want = `want a crypt(3) hash such as "$y$…" or "$6$…" (mkpasswd -m yescrypt), or "!" or "*" for no password login`
	if s == "!" || s == "*" {
		return ""
	}
	h := strings.TrimPrefix(s, "!")
	if strings.ContainsAny(h, ":\n") || hasControl(h) {
		return "has ':' or control characters, which /etc/shadow cannot hold: " + want
	}
	parts := strings.Split(h, "$")
	if len(parts) < 4 || parts[0] != "" || parts[1] == "" || parts[len(parts)-1] == "" {
		return fmt.Sprintf("%q is not a crypt(3) hash (is it a plain password? never put one in a file): %s", clip(s), want)
	}
	for _, c := range h {
		if !(c < 128 && (isAlnum(byte(c)) || strings.ContainsRune("$./=,+-", c))) {
			return fmt.Sprintf("%q has a character no crypt(3) hash has: %s", clip(s), want)
		}
	}
	return ""
}

func checkHostname(s string) string {
	const want = "want an RFC 1123 host name: labels of letters, digits and '-' (not first or last), joined by dots, at most 64 bytes"
	if s == "" || len(s) > 64 {
		return fmt.Sprintf("%q: %s", clip(s), want)
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.TrimFunc(l, func(r rune) bool { return r < 128 && (isAlnum(byte(r)) || r == '-') }) != "" {
			return fmt.Sprintf("%q: %s", s, want)
		}
	}
	return ""
}

func checkTimezone(s string) string {
	const want = "want an IANA time zone name such as UTC or Europe/Berlin"
	parts := strings.Split(s, "/")
	if s == "" || len(s) > 64 || len(parts) > 3 || !(s[0] >= 'A' && s[0] <= 'Z' || s[0] >= 'a' && s[0] <= 'z') {
		return fmt.Sprintf("%q: %s", clip(s), want)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.TrimFunc(p, func(r rune) bool {
			return r < 128 && (isAlnum(byte(r)) || strings.ContainsRune("_+-", r))
		}) != "" {
			return fmt.Sprintf("%q: %s", s, want)
		}
	}
	return ""
}

// unitSuffixes are systemd's unit types.
var unitSuffixes = []string{".service", ".socket", ".timer", ".target", ".path", ".mount", ".automount", ".swap", ".slice", ".scope", ".device"}

func checkUnit(s string) string {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || !slices.Contains(unitSuffixes, s[i:]) {
		return fmt.Sprintf("%q: want a unit name with its type, e.g. nginx.service (types: %s)", clip(s), strings.Join(unitSuffixes, " "))
	}
	prefix := s[:i]
	if len(s) > 255 || strings.Count(prefix, "@") > 1 || strings.HasPrefix(prefix, "@") ||
		strings.TrimFunc(prefix, func(r rune) bool { return r < 128 && (isAlnum(byte(r)) || strings.ContainsRune(":-_.\\@", r)) }) != "" {
		return fmt.Sprintf("%q: want a systemd unit name (letters, digits, ':', '-', '_', '.', '\\', one '@' for a template instance)", clip(s))
	}
	return ""
}

// reservedMounts are mount points imgfab owns or that cannot be separate partitions.
var reservedMounts = []string{"/", "/boot", "/boot/efi", "/efi", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/proc", "/sys", "/dev", "/run"}

func checkMount(s string) string {
	if msg := checkImagePath(s); msg != "" && s != "/" {
		return msg
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\\' }) {
		return fmt.Sprintf("%q has a space or backslash, which /etc/fstab would need escaped", s)
	}
	for _, r := range reservedMounts {
		if s == r || r != "/" && r != "/usr" && r != "/etc" && strings.HasPrefix(s, r+"/") {
			return fmt.Sprintf("%q cannot be its own partition (imgfab makes the root and the ESP; %s and below /proc, /sys, /dev, /run, /boot are reserved)", s, strings.Join(reservedMounts, ", "))
		}
	}
	return ""
}

func checkLabel(s string) string {
	if s == "" || len(s) > 16 || strings.TrimFunc(s, func(r rune) bool { return r < 128 && (isAlnum(byte(r)) || strings.ContainsRune("._-", r)) }) != "" {
		return fmt.Sprintf("%q: want 1 to 16 letters, digits, '.', '_' or '-' (ext4 labels hold 16 bytes)", clip(s))
	}
	return ""
}

// partitionTypes are the Discoverable Partitions types a partition may have, with their GUIDs
// (the names of package partition).
var partitionTypes = map[string]string{
	"var":           "4D21B016-B534-45C2-A9FB-5C16E091FD2D",
	"tmp":           "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1", // /var/tmp
	"home":          "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
	"srv":           "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
	"swap":          "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
	"linux-generic": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
}

func defaultPartType(mount, fs string) string {
	switch {
	case fs == "swap":
		return "swap"
	case mount == "/var":
		return "var"
	case mount == "/var/tmp":
		return "tmp"
	case mount == "/home":
		return "home"
	case mount == "/srv":
		return "srv"
	}
	return "linux-generic"
}

// placeholders are what output paths and publish parameters may hold.
var placeholders = []string{"{class}", "{platform}", "{arch}"}

// checkPlaceholders checks that every brace in s belongs to a known placeholder.
func checkPlaceholders(s string) string {
	t := s
	for _, p := range placeholders {
		t = strings.ReplaceAll(t, p, "")
	}
	if strings.ContainsAny(t, "{}") {
		return fmt.Sprintf("%q: braces other than the placeholders %s", clip(s), strings.Join(placeholders, ", "))
	}
	return ""
}

func expand(s, class string, p Platform) string {
	return strings.NewReplacer("{class}", class, "{platform}", p.Slug(), "{arch}", p.Arch).Replace(s)
}

func checkOutputPath(s string) string {
	if s == "" {
		return "empty: want the output file, e.g. out/{class}-{arch}.qcow2"
	}
	if hasControl(s) {
		return fmt.Sprintf("%q has control characters", s)
	}
	if msg := checkPlaceholders(s); msg != "" {
		return msg
	}
	if s != "-" && (strings.HasSuffix(s, "/") || path.Base(s) == "." || path.Base(s) == "..") {
		return fmt.Sprintf("%q names a directory: want a file", s)
	}
	return ""
}

func fmtErr(err error) string { return strings.TrimPrefix(err.Error(), "diskfmt: ") }

func checkFormat(s string) string {
	if _, err := diskfmt.Lookup(s); err != nil {
		return fmtErr(err)
	}
	return ""
}

// outputFormat is the format an output is written in: its format, else its path's extension.
func outputFormat(o Output) (string, error) {
	if o.Format != "" {
		return o.Format, nil
	}
	f, err := diskfmt.FromPath(expand(o.Path, "c", Platform{OS: "linux", Arch: "amd64"}))
	if err != nil {
		return "", err
	}
	return f.Name(), nil
}

func checkOutputFormat(o Output) string {
	name, err := outputFormat(o)
	if err != nil {
		return fmtErr(err) + "; or give format"
	}
	if _, err := diskfmt.New(name, diskfmt.Options{Compress: o.Compress}); err != nil {
		return fmtErr(err)
	}
	return ""
}

// publishParams are the parameters of each target: the flags of `imgfab push TARGET` in
// snake_case. Credentials are none of them.
var publishParams = map[string][]string{
	"aws":   {"name", "region", "via", "bucket", "tpm", "imdsv2", "boot_mode", "volume_size", "parallel", "part_size", "poll_interval", "no_check"},
	"gcp":   {"name", "project", "bucket", "object", "family", "chunk_size", "poll_interval", "no_check"},
	"azure": {"name", "resource_group", "storage_account", "container", "location", "subscription", "hyperv_generation", "upload_only", "parallel", "no_check", "gallery", "gallery_image", "gallery_image_version"},
	"oci":   {"ref", "artifact", "insecure", "no_check"},
}

var publishRequired = map[string][]string{
	"aws":   {"name"},
	"gcp":   {"name", "bucket"},
	"azure": {"name", "resource_group", "storage_account"},
	"oci":   {"ref"},
}

func publishTargetNames() []string { return slices.Sorted(maps.Keys(publishParams)) }

var (
	boolParams = []string{"tpm", "imdsv2", "upload_only", "artifact", "insecure", "no_check"}
	intParams  = []string{"volume_size", "parallel", "part_size", "chunk_size"}
	enumParams = map[string][]string{
		"via":               {"ebs", "s3"}, // aws; azure's only value is the default
		"boot_mode":         {"auto", "uefi", "legacy-bios", "uefi-preferred"},
		"hyperv_generation": {"auto", "V1", "V2"},
	}
)

func checkParam(target, key, v string) string {
	switch {
	case v == "":
		return "empty: leave the key out for the default"
	case hasControl(v):
		return "has control characters"
	case slices.Contains(boolParams, key):
		if v != "true" && v != "false" {
			return fmt.Sprintf("want true or false, got %q", v)
		}
	case slices.Contains(intParams, key):
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n <= 0 {
			return fmt.Sprintf("want a positive whole number, got %q", v)
		}
	case key == "poll_interval":
		if d, err := time.ParseDuration(v); err != nil || d <= 0 || d > 10*time.Minute {
			return fmt.Sprintf("want a duration from 1ms to 10m (e.g. 5s), got %q", v)
		}
	case enumParams[key] != nil:
		if !slices.Contains(enumParams[key], v) {
			return fmt.Sprintf("want one of %s, got %q", strings.Join(enumParams[key], ", "), v)
		}
	}
	return checkPlaceholders(v)
}

// credentialWords mark a key that would hold a secret.
var credentialWords = []string{"secret", "password", "passwd", "token", "credential", "access_key", "accesskey", "storage_key", "account_key", "private_key", "api_key", "apikey", "sas", "session", "client_secret", "connection_string"}

func isCredentialKey(k string) bool {
	l := strings.ToLower(strings.ReplaceAll(k, "-", "_"))
	if l == "key" || strings.HasSuffix(l, "_key") {
		return true
	}
	for _, w := range credentialWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}
