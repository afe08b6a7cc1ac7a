// Package firstboot readies an image to be started many times as cattle: every machine started
// from it grows its root to its own disk, gets its own identity and finds its ESP, by itself, on
// its first boot. It runs no agent of its own in the image: it configures the image's own tools
// (systemd-repart, systemd-growfs, growpart, ssh-keygen, systemd's first-boot machine-id) and
// removes what would be shared between instances, as virt-sysprep does.
//
// It works on the flattened tar stream that becomes the root filesystem, in the same single pass
// (Preparer.Entry for every entry, then Preparer.Finish): it learns what the image ships from the
// entries it sees, drops or rewrites the few that carry identity, holds back /etc/fstab, and adds
// its files at the end. Nothing is read twice and nothing is held in memory but /etc/fstab
// (at most MaxFstab bytes).
//
// # Operations
//
// Each operation is named as virt-sysprep names its own where there is one, is reported in
// Result.Ops (imgfab build --json: "first_boot") when it changed something, and can be switched
// off by name (Options.Keep; imgfab build --keep NAME,…):
//
//   - machine-id: /etc/machine-id holds "uninitialized" (an image with systemd) so that systemd
//     generates the machine's id on its first boot and runs it as a first boot
//     (ConditionFirstBoot=, machine-id(5)); empty without systemd. /var/lib/dbus/machine-id
//     becomes a symlink to it where the image has /var/lib/dbus.
//   - ssh-hostkeys: /etc/ssh/ssh_host_* are removed. Where the image has sshd and no way of its
//     own to make them (Fedora's sshd-keygen@.service), imgfab-ssh-keygen.service runs the
//     image's `ssh-keygen -A` before sshd starts, on a boot that finds no host key.
//   - random-seed: /var/lib/systemd/random-seed, /var/lib/urandom/random-seed, /var/lib/random-seed.
//   - credentials: /var/lib/systemd/credential.secret (the host key of systemd-creds).
//   - logfiles: files under /var/log are emptied (kept, with their modes: wtmp, btmp, lastlog);
//     journal files under /var/log/journal are removed.
//   - dhcp-client-state: leases of dhclient, dhcpcd and NetworkManager.
//   - bash-history: /root/.bash_history and /home/*/.bash_history.
//   - tmp-files: the contents of /tmp and /var/tmp.
//   - hostname: /etc/hostname says "localhost", so that a machine takes its name from DHCP or its
//     cloud's metadata (a debootstrapped tree carries the build host's name) — in an image that
//     has a way to (systemd, cloud-init); elsewhere the image's name is kept, as nothing would
//     give one at boot. Off when the class sets a hostname (Options.KeepHostname).
//   - fstab: /etc/fstab mounts the root (fsck pass 1) and the ESP (pass 2) by filesystem UUID,
//     merged into the image's file (debootstrap's "# UNCONFIGURED FSTAB FOR BASE SYSTEM" is
//     replaced, other lines kept). The ESP goes where the image's tools look for it: /efi when
//     the image has that directory and no /boot/efi, else /boot/efi (bootctl and kernel-install
//     find it at either, Debian's grub-efi at /boot/efi), so that a kernel the running system
//     installs reaches the boot menu.
//   - grow: the root partition and its filesystem grow to the end of the disk on every boot
//     where there is room. On GPT with systemd-repart in the image: /etc/repart.d/50-imgfab-root.conf
//     (Type=root) and x-systemd.growfs on the root's fstab line (systemd-growfs). Else, where the
//     image has growpart (cloud-guest-utils, which also handles MBR): imgfab-growpart.service
//     runs it before systemd-growfs. An image with its own repart.d definitions is left to them.
//     With none of these the build warns, naming what to install. Options.NoGrow switches it off.
//
// # Limits
//
// Paths are matched as the stream names them (the image's own paths, e.g. usr/sbin/sshd on a
// merged-/usr image); a file reached only through a symlinked directory is not seen. An
// /etc/fstab that is not a regular file is left alone, with a warning. Growth of the root
// needs systemd's fstab generator (x-systemd.growfs) for the filesystem step; the partition step
// runs in the booted system, so the first boot runs at the image's size until systemd-growfs has
// resized the mounted root (seconds).
package firstboot
