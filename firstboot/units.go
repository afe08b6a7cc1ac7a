package firstboot

// The files Finish adds. They configure the image's own tools; none runs a program of imgfab's.

const repartConf = "50-imgfab-root.conf"

// repartRoot makes systemd-repart (repart.d(5)) grow the root partition, the last on the disk,
// into the free space after it; it matches the existing partition of the native root type and
// creates nothing.
const repartRoot = `# Written by imgfab: on boot, systemd-repart grows the root partition into the free space
# after it (a disk larger than the image); systemd-growfs then grows its filesystem
# (x-systemd.growfs in /etc/fstab). See repart.d(5).
[Partition]
Type=root
`

const repartVarConf = "50-imgfab-var.conf"

// repartVar makes systemd-repart grow /var's partition, the last on a disk with a read-only root.
const repartVar = `# Written by imgfab: on boot, systemd-repart grows the /var partition (the last on this disk,
# whose root is read-only) into the free space after it; systemd-growfs then grows its
# filesystem (x-systemd.growfs in /etc/fstab). See repart.d(5).
[Partition]
Type=var
`

const growpartUnit = "imgfab-growpart.service"

// growpartService runs the image's growpart (cloud-guest-utils) on the partition that holds the
// root filesystem, found through sysfs from the root's device number, before systemd-growfs
// resizes the filesystem (systemd-growfs@-.service, as systemd 252's fstab generator names it;
// systemd-growfs-root.service in later versions). growpart exits 1 when there is nothing to
// grow ("NOCHANGE").
const growpartService = `# Written by imgfab: on boot, grow the root partition into the free space after it with the
# image's growpart (cloud-guest-utils; MBR and GPT); systemd-growfs then grows the filesystem
# (x-systemd.growfs in /etc/fstab).
[Unit]
Description=Grow the root partition to the end of its disk
Documentation=man:growpart(1)
DefaultDependencies=no
Conflicts=shutdown.target
After=systemd-remount-fs.service
Before=systemd-growfs@-.service systemd-growfs-root.service local-fs.target shutdown.target
ConditionVirtualization=!container

[Service]
Type=oneshot
RemainAfterExit=yes
Environment=TMPDIR=/run
ExecStart=/bin/sh -c 'set -e; sys=$$(readlink -f /sys/dev/block/$$(mountpoint -d /)); n=$$(cat "$$sys/partition"); disk=/dev/$$(basename "$$(dirname "$$sys")"); rc=0; growpart "$$disk" "$$n" || rc=$$?; [ "$$rc" -le 1 ]'

[Install]
WantedBy=sysinit.target
`

const sshKeygenUnit = "imgfab-ssh-keygen.service"

// sshKeygenService makes this machine's SSH host keys with the image's ssh-keygen whenever one
// is missing (the first boot: the image carries none), before sshd starts.
const sshKeygenService = `# Written by imgfab: the image carries no SSH host keys (every machine started from it would
# share them); make this machine's own before sshd starts.
[Unit]
Description=Generate the SSH host keys of this machine
Documentation=man:ssh-keygen(1)
Before=ssh.service sshd.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=@KEYGEN@ -A

[Install]
WantedBy=multi-user.target
`
