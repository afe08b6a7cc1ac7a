// Package bootloader fills the EFI System Partition of an image: one file per loader.
//
// systemd-boot (systemdboot.go): the loader binary is taken from the image itself
// (/usr/lib/systemd/boot/efi/systemd-bootx64.efi) and installed at the removable-media fallback
// path /EFI/BOOT/BOOTX64.EFI (what firmware boots with empty NVRAM) and at
// /EFI/systemd/systemd-bootx64.efi; the kernel and initrd found in the image are copied to the
// ESP and described by one Boot Loader Specification Type #1 entry, because an entry may only
// reference files on its own partition.
//
// The ESP is FAT32, formatted and filled through go-diskfs with its reproducible mode (volume ID
// 0). go-diskfs stamps directory entries with SOURCE_DATE_EPOCH or the clock, so the ESP writer
// sets that variable to the build's epoch while it runs (and restores it); every FAT timestamp is
// the build's epoch.
//
// Unified Kernel Images (uki.go): PlanUKI builds a UKI from the image's systemd stub, kernel,
// initrd, command line, os-release and kernel version with debug/pe, streamed (the kernel and
// initrd are never held in memory), at /EFI/Linux/ for systemd-boot or at /EFI/BOOT/BOOTX64.EFI.
//
// Secure Boot (shim.go): PlanShim lays out the distribution's signed shim and GRUB and a grub.cfg
// where the signed GRUB looks for it (its prefix, read from the binary), with the signed kernel.
//
// BIOS (grub.go, grub_core.go): core.img is assembled in Go from the image's own
// /usr/lib/grub/i386-pc (diskboot.img, lzma_decompress.img, LZMA-compressed kernel.img and the
// modules from moddep.lst, an embedded config that finds the FAT partition by label), as
// grub-mkimage -O i386-pc would; boot.img is patched into sector 0 around the partition table.
//
// Limits: x86-64 only; no signing (a UKI is unsigned). Files read from the image are read through
// an fs.FS view of the written root filesystem, so image symlinks cannot reach the host.
package bootloader
