package spec

import (
	"errors"
	"strings"
	"testing"
)

// TestMalformed: each bad file fails with the position of the offending key or value and a
// message that says what was expected.
func TestMalformed(t *testing.T) {
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1hA2Yb+0lq0U2d4sO2mUpQzQbqk5cZ3gWq8v9m0Xx ops@example"
	cases := []struct {
		name string
		yaml string
		pos  string // "line:col"
		path string
		want string
	}{
		{"unknown top key", "classes: {}\nversion: 2\n", "2:1", "", `unknown key "version" (known: classes)`},
		{"no classes", "{}\n", "1:1", "", "no classes"},
		{"empty classes", "classes: {}\n", "1:10", "classes", "no classes: want at least one"},
		{"unknown key", `
classes:
  web:
    from: oci:./l
    users:
      - name: ops
        uid: 1500
        pasword: x
`, "8:9", "classes.web.users[0]", `unknown key "pasword" (known: name, uid, gid, groups, shell, home, ssh_authorized_keys, password_hash)`},
		{"unknown class key", "classes:\n  web:\n    from: oci:./l\n    hostnme: web\n", "4:5", "classes.web", `unknown key "hostnme" (known: from, platforms,`},
		{"wrong type string", "classes:\n  web:\n    from: [oci:./l]\n", "3:11", "classes.web.from", "want a string, got a list"},
		{"wrong type mapping", "classes:\n  web: docker://x\n", "2:8", "classes.web", `want a mapping with the keys from, platforms`},
		{"wrong type bool", "classes:\n  web:\n    from: oci:./l\n    no_journal: yes\n", "4:17", "classes.web.no_journal", `want true or false, got the string "yes"`},
		{"duplicate key", "classes:\n  web:\n    from: oci:./l\n    hostname: a\n    hostname: b\n", "5:5", "classes.web", `duplicate key "hostname" (first at line 4, column 5)`},
		{"duplicate class", "classes:\n  web:\n    from: oci:./l\n  web:\n    from: oci:./m\n", "4:3", "classes", `duplicate class "web" (first at line 2, column 3)`},
		{"bad class name", "classes:\n  web.1:\n    from: oci:./l\n", "2:3", "classes", `class name "web.1": want 1 to 63 letters`},
		{"plain password", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: ops, uid: 1500, password: hunter2}\n", "5:32", "classes.web.users[0]", "a plain password (password) is never accepted: write password_hash"},
		{"password hash not a hash", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: ops, uid: 1500, password_hash: hunter2}\n", "5:47", "classes.web.users[0].password_hash", "is not a crypt(3) hash"},
		{"files path dotdot", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: /etc/../../x, content: a}\n", "5:16", "classes.web.files[0].path", `"/etc/../../x" has a .. component`},
		{"files path relative", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: etc/motd, content: a}\n", "5:16", "classes.web.files[0].path", `"etc/motd" is relative: want an absolute path`},
		{"files path root", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: /, content: a}\n", "5:16", "classes.web.files[0].path", `"/" is the root itself`},
		{"files path unclean", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: /etc//motd, content: a}\n", "5:16", "classes.web.files[0].path", `want "/etc/motd"`},
		{"content and source", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: /etc/motd, content: a, source: ./motd}\n", "5:39", "classes.web.files[0]", "both content and source: give exactly one"},
		{"neither content nor source", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: /etc/motd}\n", "5:9", "classes.web.files[0]", "neither content nor source"},
		{"empty from", "classes:\n  web:\n    from: \"\"\n", "3:11", "classes.web.from", "empty: want oci:DIR[:TAG], docker-archive:FILE, docker://REF or REF"},
		{"no from", "classes:\n  web:\n    hostname: web\n", "3:5", "classes.web", "no from: want the source image"},
		{"from dir:", "classes:\n  web:\n    from: dir:./x\n", "3:11", "classes.web.from", "dir: and tar: are layers, not images"},
		{"from bad ref", "classes:\n  web:\n    from: docker://Bad Ref\n", "3:11", "classes.web.from", `"Bad Ref" is not an image reference`},
		{"bad platform", "classes:\n  web:\n    from: oci:./l\n    platforms: [linux/amd64, linux/s390x]\n", "4:30", "classes.web.platforms[1]", `unknown arch "s390x"; want os/arch[/variant]`},
		{"bad platform os", "classes:\n  web:\n    from: oci:./l\n    platforms: [windows/amd64]\n", "4:17", "classes.web.platforms[0]", "imgfab builds linux images only"},
		{"duplicate platform", "classes:\n  web:\n    from: oci:./l\n    platforms: [linux/amd64, linux/amd64]\n", "4:30", "classes.web.platforms[1]", `duplicate platform "linux/amd64"`},
		{"bad mode", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: /etc/motd, content: a, mode: \"999\"}\n", "5:45", "classes.web.files[0].mode", `want an octal mode of 3 or 4 digits 0-7 such as "0644" or "0755", got "999"`},
		{"bad owner", "classes:\n  web:\n    from: oci:./l\n    directories:\n      - {path: /srv/www, owner: www-data}\n", "5:33", "classes.web.directories[0].owner", `want "user:group"`},
		{"bad size", "classes:\n  web:\n    from: oci:./l\n    disk: {size: 4Gigs}\n", "4:18", "classes.web.disk.size", `want a size such as 4GiB or 512MiB`},
		{"size too small", "classes:\n  web:\n    from: oci:./l\n    esp_size: 100KiB\n", "4:15", "classes.web.esp_size", "want a size from 1MiB to 32GiB, got 100KiB"},
		{"uid not a number", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: ops, uid: abc}\n", "5:26", "classes.web.users[0].uid", `want a number from 1 to 4294967294, not 65535, got the string "abc"`},
		{"uid zero", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: ops, uid: 0}\n", "5:26", "classes.web.users[0].uid", "0 is root's"},
		{"no uid", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: ops}\n", "5:9", "classes.web.users[0]", "no uid"},
		{"duplicate uid", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: ops, uid: 1500}\n      - {name: dev, uid: 1500}\n", "6:9", "classes.web.users[1]", "uid 1500 is already taken by classes.web.users[0]"},
		{"duplicate user", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: ops, uid: 1500}\n      - {name: ops, uid: 1501}\n", "6:9", "classes.web.users[1]", "user ops is already defined by classes.web.users[0]"},
		{"own group clash", "classes:\n  web:\n    from: oci:./l\n    groups: [{name: ops, gid: 2000}]\n    users:\n      - {name: ops, uid: 1500}\n", "6:9", "classes.web.users[0]", "the user's own group ops clashes with classes.web.groups[0]"},
		{"bad user name", "classes:\n  web:\n    from: oci:./l\n    users:\n      - {name: Ops:x, uid: 1500}\n", "5:16", "classes.web.users[0].name", `name "Ops:x": want 1 to 32 of a-z`},
		{"bad ssh key type", "classes:\n  web:\n    from: oci:./l\n    users:\n      - name: ops\n        uid: 1500\n        ssh_authorized_keys: [\"ssh-foo AAAA\"]\n", "7:31", "classes.web.users[0].ssh_authorized_keys[0]", `unknown key type "ssh-foo"`},
		{"bad ssh key base64", "classes:\n  web:\n    from: oci:./l\n    users:\n      - name: ops\n        uid: 1500\n        ssh_authorized_keys:\n          - ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ== me\n", "8:13", "classes.web.users[0].ssh_authorized_keys[0]", "does not hold a ssh-ed25519 key"},
		{"ssh dss", "classes:\n  web:\n    from: oci:./l\n    users:\n      - name: ops\n        uid: 1500\n        ssh_authorized_keys: [\"ssh-dss AAAA\"]\n", "7:31", "classes.web.users[0].ssh_authorized_keys[0]", "ssh-dss (DSA) keys are refused"},
		{"bad hostname", "classes:\n  web:\n    from: oci:./l\n    hostname: -web_1\n", "4:15", "classes.web.hostname", "want an RFC 1123 host name"},
		{"bad timezone", "classes:\n  web:\n    from: oci:./l\n    timezone: ../etc/passwd\n", "4:15", "classes.web.timezone", "want an IANA time zone name"},
		{"bad unit", "classes:\n  web:\n    from: oci:./l\n    units: {enable: [nginx]}\n", "4:22", "classes.web.units.enable[0]", `"nginx": want a unit name with its type`},
		{"unit enabled and masked", "classes:\n  web:\n    from: oci:./l\n    units: {enable: [a.service], mask: [a.service]}\n", "4:41", "classes.web.units.mask[0]", "a.service is already in enable"},
		{"credentials in publish", "classes:\n  web:\n    from: oci:./l\n    publish:\n      - {target: aws, name: web, secret_access_key: abc}\n", "5:34", "classes.web.publish[0]", `"secret_access_key" looks like a credential, and credentials never go in a class file`},
		{"azure storage key", "classes:\n  web:\n    from: oci:./l\n    publish:\n      - target: azure\n        name: web\n        storage_key: abc\n", "7:9", "classes.web.publish[0]", `"storage_key" looks like a credential`},
		{"unknown target", "classes:\n  web:\n    from: oci:./l\n    publish:\n      - {target: digitalocean, name: web}\n", "5:18", "classes.web.publish[0].target", `want one of "aws", "azure", "gcp", "oci", got "digitalocean"`},
		{"unknown publish param", "classes:\n  web:\n    from: oci:./l\n    publish:\n      - {target: gcp, name: web, bucket: b, zone: x}\n", "5:45", "classes.web.publish[0]", `unknown key "zone" for target gcp (known: target, name, project, bucket`},
		{"publish missing param", "classes:\n  web:\n    from: oci:./l\n    publish:\n      - {target: gcp, name: web}\n", "5:9", "classes.web.publish[0]", "no bucket: target gcp needs it"},
		{"unknown boot mode", "classes:\n  web:\n    from: oci:./l\n    boot: {mode: efi}\n", "4:18", "classes.web.boot.mode", `want one of "auto", "uefi", "bios", "hybrid", got "efi"`},
		{"bios with uki", "classes:\n  web:\n    from: oci:./l\n    boot: {mode: bios, uki: true}\n", "4:11", "classes.web.boot", "mode bios boots through GRUB"},
		{"duplicate output after expansion", "classes:\n  web:\n    from: oci:./l\n    platforms: [linux/amd64, linux/arm64]\n    outputs:\n      - {path: out/web.qcow2}\n", "6:9", "classes.web.outputs[0]", `duplicate output path "out/web.qcow2" for linux/arm64: classes.web.outputs[0] at 6:9 writes it for linux/amd64 too; put {arch} or {platform} in the path`},
		{"duplicate output across classes", "classes:\n  web:\n    from: oci:./l\n    outputs: [{path: \"out/{arch}.raw\"}]\n  db:\n    from: oci:./l\n    outputs: [{path: out/amd64.raw}]\n", "7:15", "classes.db.outputs[0]", `duplicate output path "out/amd64.raw" for linux/amd64: classes.web.outputs[0] at 4:15`},
		{"unknown placeholder", "classes:\n  web:\n    from: oci:./l\n    outputs: [{path: \"out/{name}.raw\"}]\n", "4:22", "classes.web.outputs[0].path", `braces other than the placeholders {class}, {platform}, {arch}`},
		{"unknown extension", "classes:\n  web:\n    from: oci:./l\n    outputs: [{path: out/web.iso}]\n", "4:22", "classes.web.outputs[0]", `no format for the extension of "out/web.iso"`},
		{"bad compress", "classes:\n  web:\n    from: oci:./l\n    outputs: [{path: out/web.vmdk, compress: zstd}]\n", "4:46", "classes.web.outputs[0]", `format vmdk takes no compression option, got "zstd"`},
		{"stdout without format", "classes:\n  web:\n    from: oci:./l\n    outputs: [{path: \"-\"}]\n", "4:22", "classes.web.outputs[0].path", "needs a format"},
		{"duplicate file path", "classes:\n  web:\n    from: oci:./l\n    files:\n      - {path: /etc/motd, content: a}\n      - {path: /etc/motd, content: b}\n", "6:9", "classes.web.files[1]", "/etc/motd is already written by classes.web.files[0]"},
		{"partition mount repeated", "classes:\n  web:\n    from: oci:./l\n    partitions:\n      - {mount: /var, size: 1GiB}\n      - {mount: /var, size: 2GiB}\n", "6:9", "classes.web.partitions[1]", "/var is already mounted by classes.web.partitions[0]"},
		{"partition mount root", "classes:\n  web:\n    from: oci:./l\n    partitions:\n      - {mount: /boot/efi, size: 1GiB}\n", "5:17", "classes.web.partitions[0].mount", `"/boot/efi" cannot be its own partition`},
		{"swap with mount", "classes:\n  web:\n    from: oci:./l\n    partitions:\n      - {mount: /swap, size: 1GiB, fs: swap}\n", "5:10", "classes.web.partitions[0]", "fs swap is not mounted: leave mount out"},
		{"partition type mismatch", "classes:\n  web:\n    from: oci:./l\n    partitions:\n      - {mount: /data, size: 1GiB, type: swap}\n", "5:42", "classes.web.partitions[0].type", "type swap goes with fs: swap"},
		{"cmdline with root", "classes:\n  web:\n    from: oci:./l\n    kernel: {cmdline: \"console=ttyS0 root=/dev/sda2\"}\n", "4:23", "classes.web.kernel.cmdline", `"root=/dev/sda2": imgfab writes root=PARTUUID=… itself`},
		{"epoch out of range", "classes:\n  web:\n    from: oci:./l\n    source_date_epoch: -1\n", "4:24", "classes.web.source_date_epoch", "want a unix time from 0 to 4294967295"},
		{"merge key", "base: &b {from: oci:./l}\nclasses:\n  web:\n    <<: *b\n", "1:1", "", `unknown key "base"`},
		{"merge key in class", "classes:\n  web:\n    <<: {from: oci:./l}\n", "3:5", "classes.web", "merge keys (<<) are not supported"},
		{"two documents", "classes:\n  web: {from: oci:./l}\n---\nclasses: {}\n", "3:1", "", "a second YAML document"},
		{"not yaml", "classes:\n  web: {from: oci:./l\n", "2:1", "", "not valid YAML: did not find expected ',' or '}'"},
		{"not yaml in a block", "classes:\n  web:\n    from: oci:./l\n   hostname: x\n", "4:1", "", "not valid YAML"},
		{"bad indentation", "classes:\n  web:\n    from: oci:./l\n    users:\n      - name: a\n     uid: 1\n", "6:1", "", "not valid YAML"},
		{"tab", "classes:\n\tweb: {from: oci:./l}\n", "2:1", "", "not valid YAML: found character that cannot start any token"},
		{"empty file", "", "1:1", "", "empty file"},
		{"mbr with three partitions", "classes:\n  web:\n    from: oci:./l\n    boot: {table: mbr}\n    partitions:\n      - {mount: /var, size: 1GiB}\n      - {mount: /home, size: 1GiB}\n      - {size: 1GiB, fs: swap}\n", "8:9", "classes.web.partitions[2]", "an MBR holds 4 primary partitions"},
		{"layer empty", "classes:\n  web:\n    from: oci:./l\n    layers: [\"\"]\n", "4:14", "classes.web.layers[0]", "empty: want a path"},
		{"bad label", "classes:\n  web:\n    from: oci:./l\n    partitions:\n      - {mount: /var, size: 1GiB, label: this-label-is-far-too-long}\n", "5:42", "classes.web.partitions[0].label", "want 1 to 16 letters"},
		{"unknown rootfs", "classes:\n  web:\n    from: oci:./l\n    rootfs: btrfs\n", "4:13", "classes.web.rootfs", `want one of "ext4", "erofs", got "btrfs"`},
		{"rootfs not a string", "classes:\n  web:\n    from: oci:./l\n    rootfs: [erofs]\n", "4:13", "classes.web.rootfs", "want a string, got a list"},
		{"verity not a bool", "classes:\n  web:\n    from: oci:./l\n    rootfs: erofs\n    verity: on\n", "5:13", "classes.web.verity", `want true or false, got the string "on"`},
		{"verity without erofs", "classes:\n  web:\n    from: oci:./l\n    verity: true\n", "4:13", "classes.web.verity", "verity needs rootfs: erofs (a read-only root: a writable one cannot be verified)"},
		{"verity with ext4", "classes:\n  web:\n    from: oci:./l\n    rootfs: ext4\n    verity: true\n", "5:13", "classes.web.verity", "verity needs rootfs: erofs"},
		{"erofs on mbr", "classes:\n  web:\n    from: oci:./l\n    boot: {table: mbr}\n    rootfs: erofs\n", "5:13", "classes.web.rootfs", "rootfs erofs needs a GPT disk"},
		{"erofs with a /var partition", "classes:\n  web:\n    from: oci:./l\n    rootfs: erofs\n    partitions:\n      - {mount: /srv, size: 1GiB}\n      - {mount: /var, size: 1GiB}\n", "7:9", "classes.web.partitions[1]", "rootfs erofs makes /var a partition of its own"},
		{"secure_boot not a mapping", "classes:\n  web:\n    from: oci:./l\n    secure_boot: keys/db.key\n", "4:18", "classes.web.secure_boot", `want a mapping with the keys key, cert, enroll, got the string "keys/db.key"`},
		{"secure_boot unknown key", "classes:\n  web:\n    from: oci:./l\n    boot: {uki: true}\n    secure_boot: {key: k, cert: c, pk: p}\n", "5:36", "classes.web.secure_boot", `unknown key "pk" (known: key, cert, enroll)`},
		{"secure_boot empty", "classes:\n  web:\n    from: oci:./l\n    boot: {uki: true}\n    secure_boot: {}\n", "5:18", "classes.web.secure_boot", "no key and cert"},
		{"secure_boot key without cert", "classes:\n  web:\n    from: oci:./l\n    boot: {uki: true}\n    secure_boot:\n      enroll: keys\n      key: keys/db.key\n", "7:7", "classes.web.secure_boot", "key and cert go together: give cert"},
		{"secure_boot cert without key", "classes:\n  web:\n    from: oci:./l\n    boot: {uki: true}\n    secure_boot: {cert: keys/db.crt}\n", "5:19", "classes.web.secure_boot", "key and cert go together: give key"},
		{"secure_boot empty path", "classes:\n  web:\n    from: oci:./l\n    boot: {uki: true}\n    secure_boot: {key: \"\", cert: c}\n", "5:24", "classes.web.secure_boot.key", "empty: want a path"},
		{"secure_boot path not a string", "classes:\n  web:\n    from: oci:./l\n    boot: {uki: true}\n    secure_boot: {key: k, cert: c, enroll: [keys]}\n", "5:44", "classes.web.secure_boot.enroll", "want a string, got a list"},
		{"secure_boot without uki", "classes:\n  web:\n    from: oci:./l\n    secure_boot: {key: k, cert: c}\n", "4:18", "classes.web.secure_boot", "secure_boot needs boot.uki: true"},
		{"secure_boot with shim", "classes:\n  web:\n    from: oci:./l\n    boot: {chain: shim}\n    secure_boot: {key: k, cert: c}\n", "5:18", "classes.web.secure_boot", "secure_boot needs boot.uki: true"},
		{"publish param bool", "classes:\n  web:\n    from: oci:./l\n    publish:\n      - {target: oci, ref: \"r.example/x:{arch}\", insecure: maybe}\n", "5:60", "classes.web.publish[0].insecure", `want true or false, got "maybe"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("parsed: %s", f.YAML())
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if got := e.Pos.String(); got != "bad.yaml:"+tc.pos {
				t.Errorf("position %s, want bad.yaml:%s (%v)", got, tc.pos, err)
			}
			if e.Path != tc.path {
				t.Errorf("path %q, want %q (%v)", e.Path, tc.path, err)
			}
			if !strings.Contains(e.Msg, tc.want) {
				t.Errorf("message %q, want it to hold %q", e.Msg, tc.want)
			}
			prefix := "bad.yaml:" + tc.pos + ": "
			if tc.path != "" {
				prefix += tc.path + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
	if len(cases) < 20 {
		t.Fatalf("%d cases", len(cases))
	}
}
