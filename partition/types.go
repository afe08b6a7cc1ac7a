package partition

// typeNames names GPT partition types: the UAPI Discoverable Partitions Specification's names
// where it has them, else the usual short names. The one table of type GUIDs: the writer uses the
// Type constants, inspect names what it reads with TypeName.
// rootTypes are the Discoverable Partitions root types by OCI architecture.
var rootTypes = map[string]string{"amd64": TypeRootX86_64, "arm64": TypeRootARM64}

// RootType is the root partition's type GUID and name for an OCI architecture ("amd64",
// "arm64"); ok is false for one without a type here.
func RootType(arch string) (guid, name string, ok bool) {
	guid, ok = rootTypes[arch]
	return guid, typeNames[guid], ok
}

var typeNames = map[string]string{
	TypeESP:                                "esp",
	"BC13C2FF-59E6-4262-A352-B275FD6F7172": "xbootldr",
	TypeRootX86_64:                         "root-x86-64",
	"44479540-F297-41B2-9AF7-D131D5F0458A": "root-x86",
	TypeRootARM64:                          "root-arm64",
	"69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "root-arm",
	"8484680C-9521-48C6-9C11-B0720656F69E": "usr-x86-64",
	"75250D76-8CC6-458E-BD66-BD47CC81A812": "usr-x86",
	"B0E01050-EE5F-4390-949A-9101B17104E9": "usr-arm64",
	"7D0359A3-02B3-4F0A-865C-654403E70625": "usr-arm",
	TypeHome:                               "home",
	TypeSrv:                                "srv",
	TypeVar:                                "var",
	TypeVarTmp:                             "tmp",
	TypeSwap:                               "swap",
	TypeLinuxGeneric:                       "linux-generic",
	TypeBIOSBoot:                           "bios-boot",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "lvm",
	"A19D880F-05FC-4D3B-A006-743F0F84911E": "raid",
	"CA7D7CCB-63ED-4C53-861C-1742536059CC": "luks",
	"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "microsoft-basic-data",
	"E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "microsoft-reserved",
}

// TypeName is the short name of a GPT partition type GUID (upper case, as the Type constants),
// or "" when it is not in the table.
func TypeName(guid string) string { return typeNames[guid] }
