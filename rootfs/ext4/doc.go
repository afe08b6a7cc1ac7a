package ext4
