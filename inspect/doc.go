// Package inspect reports what is on a disk image: its format and size, the partition table, each
// partition's type and filesystem, the boot entries on the EFI system partition, the kernel command
// line, kernel and initrd, the OS from the root filesystem's os-release, the root's dm-verity hash
// tree, and the Authenticode signatures of the EFI binaries. `imgfab inspect` prints its Report.
//
// It reads every format diskfmt opens (raw, qcow2, VMDK, VHD) through diskfmt.Image, and only the
// structures it needs: the MBR and GPT (header and entry array, both CRC32-checked; the backup header
// when the primary is damaged), the first 64 KiB of each partition for its magic numbers, the FAT
// directories and small files of the ESP, the EFI binaries under /EFI (each read once, for its
// Authenticode digest), a verity superblock, and a few inodes and directories of the root
// filesystem (through rootfs/ext4's reader, or go-erofs's for EROFS; erofs.go). It never scans the
// disk, except the root partition when InspectWith is asked to verify its hash tree, and runs no
// outside program. Open (open.go) hands the ESP and the root filesystem out as read-only fs.FS for
// callers that read files (package check), and OpenInitrd the default entry's initrd (BLS, UKI
// .initrd section, GRUB).
//
// # Read-only roots and dm-verity
//
// An EROFS root (`imgfab build --rootfs erofs`) is found as an ext4 one is: by root=PARTUUID= of the
// default entry, else by type. Under dm-verity (`--verity`) the command line says root=/dev/mapper/root
// … roothash=<hex>; the root is then the partition whose GUID is the first 128 bits of the root hash
// and its hash partition the one whose GUID is the last 128 bits (the Discoverable Partitions
// Specification's convention, which systemd-veritysetup-generator relies on), else the partitions
// of type root-* and root-*-verity. The filesystem is read from the data partition directly (the
// tree is in its own partition), without checking blocks against the tree. Report.Verity gives the
// hash partition's superblock (cryptsetup's struct verity_sb), roothash= and whether the GUIDs follow
// the convention; with Options.VerifyVerity the tree is recomputed with package verity from the
// data partition and compared, block by block, with the hash partition and its root with roothash=
// (sha256, hash type 1, blocks up to 4 KiB: what veritysetup and imgfab make). A mismatch is a
// result (VerityCheck.OK false), not an error.
//
// # Signatures
//
// Every *.efi file under /EFI on the ESP (four directory levels, at most 64 files) is listed in
// Report.EFIBinaries with its Authenticode signatures, as package secureboot reads them: signer,
// issuer, whether the signed digest is the file's. With Options.Certs (`imgfab inspect --cert`)
// each signature says whether it verifies against those certificates as firmware checks its db.
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
//   - Filesystems are identified by magic: ext2/3/4 and erofs (with UUID, label and size), vfat
//     (serial and label), swap (UUID and label), a verity hash partition (DM_verity_hash, with the
//     superblock's UUID), xfs, btrfs, squashfs (type only); anything else is "unknown".
//   - Only ext2/3/4 and EROFS root filesystems are read (for os-release and the kernel paths);
//     EROFS without compression (go-erofs refuses compressed images), as imgfab and mkfs.erofs
//     without -z write it.
//   - The verity tree is recomputed only for sha256, hash type 1 and block sizes up to 4096; a
//     verity signature partition (root-*-verity-sig) is named, not read.
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
// (files read whole: an initrd, a UKI) plus that budget, and so may the reader of the EFI binaries'
// signatures. EROFS is read by a third-party reader (github.com/erofs/go-erofs) fenced in as
// erofs.go says: the superblock checked first, every read inside the partition and charged to a
// budget (64 MiB for Inspect; twice the partition plus 64 MiB for Open's Root), directories over
// 32 MiB not listed, ReadFile bounded by the partition, and a panic inside it recovered into an
// error. The verity superblock's sizes are checked against the partitions before the tree is
// recomputed, and the comparison holds one hash block at a time. The container formats bound the
// guest data the same way (diskfmt, "# Limits").
package inspect
