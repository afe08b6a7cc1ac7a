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
// Limits: x86-64 UEFI only for now; BIOS/GRUB, Unified Kernel Images and Secure Boot chains come
// later. Files read from the image are read through an fs.FS view of the written root filesystem,
// so image symlinks cannot reach the host.
package bootloader
