// Package check says whether a disk image fits where it is going: for each target (aws,
// aws-arm64, gcp, azure, kubevirt, openstack, vmware, metal) a set of rules, each pass, fail, warn
// or skip, with a one-line fix and the documentation it follows (docs/CHECK.md lists them all).
//
// Gather reads a disk image into Facts with imgfab's own readers (package inspect for the
// partition table, the ESP, the boot entries and the root filesystem; inspect/initrd for the
// initrd); Check runs a target's rules over Facts. Facts is plain data, so the rules are tested
// on Facts written by hand as well as on real disks. A target is data (Target: firmware, drivers,
// console, agents, limits, formats, sources), declared in its own file; the rules are functions
// of Facts and Target (rules.go).
//
// # Limits
//
// Only what imgfab's readers read is judged: ext2/3/4 roots, the default boot entry's initrd (a
// BLS entry's, a UKI's .initrd, GRUB's on the ESP or the root), systemd-style unit and fstab
// files, cloud-init's datasource_list in its flow or block form. A module is "there" when its
// file is (or modules.builtin names it); whether udev loads it is not judged. The network rule
// knows cloud-init, NetworkManager, ifupdown, netplan and systemd-networkd with a DHCP= .network
// in /etc/systemd/network; other tools are reported as nothing configuring the network (a
// warning).
//
// # Security
//
// The disk is untrusted: everything is read through inspect's bounded readers, files from the
// root filesystem are read up to a few KiB to 32 MiB each (gather.go, the max* constants) and
// directories up to 4096 entries; nothing on the disk is executed.
package check
