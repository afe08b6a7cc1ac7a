// Package inspect reports what is on a disk image: its format and size, the partition table, each
// partition's type and filesystem, the boot entries on the EFI system partition, the kernel command
// line, kernel and initrd, and the OS from the root filesystem's os-release. `imgfab inspect` prints
// its Report.
//
// It reads every format diskfmt opens (raw, qcow2, VMDK, VHD) through diskfmt.Image, and only the
// structures it needs: the MBR and GPT (header and entry array, both CRC32-checked; the backup header
// when the primary is damaged), the first 64 KiB of each partition for its magic numbers, the FAT
// directories and small files of the ESP, and a few inodes and directories of the root filesystem
// (through rootfs/ext4's reader). It never scans the disk and runs no outside program. Open (open.go)
// hands the ESP and the root filesystem out as read-only fs.FS for callers that read files (package
// check), and OpenInitrd the default entry's initrd (BLS, UKI .initrd section, GRUB).
//
// # Our own FAT reader
//
// The ESP is read with a small FAT12/16/32 reader of our own (fat.go) rather than go-diskfs: go-diskfs
// wants a backend.Storage (an *os.File-like value with Seek, Stat and Sys), loads the whole FAT into
// memory with a size taken from the boot sector unchecked, and is not written for hostile input. Ours
// reads one FAT entry at a time, checks every cluster number and bounds every chain by the cluster
// count. GPT is parsed here too (table.go), for the same reasons and for error messages that name the
// field and its byte offset.
//
// # Limits
//
//   - Sector size 512 or 4096; MBR extended/logical partitions are not followed.
//   - Filesystems are identified by magic: ext2/3/4 (with UUID and label), vfat (serial and label),
//     swap (UUID and label), xfs, btrfs, squashfs (type only); anything else is "unknown".
//   - Only ext2/3/4 root filesystems are read (for os-release and the kernel paths).
//   - Boot entries: Boot Loader Specification type #1 files in loader/entries, unified kernel images
//     (EFI/BOOT/BOOTX64.EFI and EFI/Linux/*.efi, from their PE sections) and GRUB configurations on
//     the ESP (/grub/grub.cfg, /EFI/*/grub.cfg: the first menuentry with a linux line); a grub.cfg on
//     the root filesystem is not read, and GRUB variables are reported as written.
//   - Boot modes: UEFI when the ESP has EFI/BOOT/BOOTX64.EFI; BIOS when sector 0 holds boot code
//     (GRUB's boot.img recognised, with where its core.img lies).
//
// # Security
//
// The image is untrusted. Work and memory are bounded by the image's real bytes, never by a size or
// count it claims. Every offset and size is checked against the disk or partition before it is
// read, each count and size on its own before they are multiplied (a GPT header's entry count and
// entry size are both up to 2^32-1), allocations are bounded (GPT entries 1 MiB, FAT directories
// and files 1 MiB, os-release 64 KiB), loops are bounded, and a damaged filesystem becomes a
// warning in the Report, never a panic. Shared or repeated references are budgeted: directory
// entries may name the same clusters, so one FAT reader reads at most 16 MiB in all, and a file's
// cluster chain that loops back is found within a few times the loop's length (Brent), not after
// the size its entry claims. The ESP that Open hands out may read twice its partition's size
// (files read whole: an initrd, a UKI) plus that budget. The container formats bound the guest
// data the same way (diskfmt,
// "# Limits").
package inspect
