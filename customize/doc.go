// Package customize turns a class's customisation (files, directories, users and groups,
// hostname, timezone, systemd units, fstab entries) into one generated top layer: an
// uncompressed tar stream laid over the image like any other layer, so that a class's root
// filesystem stays a pure function of content-addressed layers.
//
// Layer reads the image's own flattened tree (never the host's /etc) and writes only the
// entries that change: new files and directories, whole new copies of the account databases,
// /etc/hosts and /etc/fstab with the image's lines kept, the symlinks that systemctl would
// make, and OCI whiteouts (".wh.NAME") for the links that disable removes.
//
// # What it does the way the distribution's tools do
//
//   - Users and groups are appended to /etc/passwd, /etc/group, /etc/shadow and /etc/gshadow;
//     existing lines are kept byte for byte and in order (only the member list of a group that
//     gains a supplementary member changes). A clash of name, uid or gid with an existing line is
//     an error naming both the item and the line ("/etc/passwd:23"). Missing uids and gids are
//     the first free ones from UID_MIN/GID_MIN of the image's /etc/login.defs, as useradd picks
//     them; the home directory mode is HOME_MODE, else 0777 &^ UMASK (0755 on Debian 12), and a
//     new home gets a copy of /etc/skel, as useradd -m does.
//   - Units are enabled from their own [Install] section (WantedBy=, RequiredBy=, Alias=, Also=,
//     DefaultInstance=, specifiers %i %I %p %P %n %N %%), looked up in /etc/systemd/system,
//     /usr/local/lib/systemd/system, /lib/systemd/system and /usr/lib/systemd/system in that
//     order, and linked to the path where the unit was found, as Debian 12's systemctl (systemd
//     252) does: on a merged-/usr image that is /lib/systemd/system/UNIT. Unit files added by
//     the same Config are seen.
//   - Hostname writes /etc/hostname and a "127.0.1.1 NAME" line in /etc/hosts, as Debian's
//     installer does; Timezone links /etc/localtime to ../usr/share/zoneinfo/ZONE.
//   - Fstab entries replace a Debian base image's "# UNCONFIGURED FSTAB FOR BASE SYSTEM" file, or
//     else replace the lines for the same mount point and keep every other line.
//
// # Determinism
//
// The tar is USTAR (PAX only for a path too long for USTAR), entries sorted by path (so parents
// come before children), every mtime the given epoch, no user or group names, no host metadata.
// The same Config, tree and epoch give the same bytes and digest.
//
// # Security rules
//
//   - Every path in the Config must be absolute and clean, without "..", NUL, or a ".wh." name.
//   - The tree is read only through its own symlinks, resolved here component by component as
//     the booted system would see them (an absolute target starts at the image root); a symlink
//     that climbs above the root, or a chain longer than 40 links, is refused with an error naming
//     the path. Files are then read at their resolved, symlink-free path, so an os.DirFS root
//     never follows a link onto the host.
//   - Entries are written at resolved paths, so no entry ever has a symlink as a parent.
//   - A Source file is opened with internal/safefile (regular files only). Nothing else on the
//     host is read or written.
//
// # Limits
//
// The layer is built in memory and capped at MaxLayerSize (64 MiB): customisation is small; ship
// large payloads as a layer of their own. A single file read from the image is capped the same.
// The root should implement fs.ReadLinkFS (os.DirFS and the ext4 writer's FS view do); without
// it symlinks are invisible. Listing a directory (for /etc/skel and for disable) sees the image
// only, not entries added by the same Config. Owners of existing files are kept when the FS
// reports them (a Sys() struct with Uid and Gid, as ext4.Stat and syscall.Stat_t), else root. systemctl's preset, upholds and
// user-unit (--user) handling are not implemented.
package customize
