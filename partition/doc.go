// Package partition does the layout maths of a disk image and writes its partition table.
//
// A Layout is plain data: the disk size, a disk GUID and the partitions with their type GUIDs
// (from the Discoverable Partitions Specification), unique GUIDs, names, offsets and sizes. Plan
// places partitions on 1 MiB boundaries after a 1 MiB head (protective MBR, primary GPT and
// alignment) and leaves the last MiB of the disk for the backup GPT. WriteGPT writes a protective
// MBR and both GPT copies through go-diskfs.
//
// GUIDs are never random: DeriveGUID turns a seed (a hash of the build's inputs) and a purpose
// label into a version-4-formatted GUID, in the spirit of systemd-repart, so the same inputs give
// the same table bytes.
//
// Limits: GPT only, 512-byte logical sectors, at most 128 entries.
package partition
