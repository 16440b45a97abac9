package simulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// ErrInvalidInstance is wrapped by every error that rejects an Instance's
// content (as opposed to a file that cannot be read or parsed).
var ErrInvalidInstance = errors.New("invalid instance")

// Instance is the data the simulator serves. Its JSON form is what
// LoadInstance reads; JSON names follow the metadata item names. Leaf values
// are served byte for byte; an empty optional value leaves its item out, so
// a GET of it answers 404. The items mac, private-ipv4, vpc-id,
// vpc-cidr-block, vswitch-id and vswitch-cidr-block are those of the first
// NIC.
type Instance struct {
	InstanceID     string `json:"instance-id"`
	Hostname       string `json:"hostname,omitempty"`
	RegionID       string `json:"region-id"`
	ZoneID         string `json:"zone-id"`
	OwnerAccountID string `json:"owner-account-id,omitempty"`
	SerialNumber   string `json:"serial-number,omitempty"`
	ImageID        string `json:"image-id,omitempty"`
	NetworkType    string `json:"network-type,omitempty"`
	SourceAddress  string `json:"source-address,omitempty"`
	KMSServer      string `json:"kms-server,omitempty"`
	// PublicIPv4 is served as both public-ipv4 and eipv4; empty: unbound.
	PublicIPv4 string `json:"public-ipv4,omitempty"`
	// RAMRole names the role whose credentials are served under
	// ram/security-credentials/; empty: no role attached.
	RAMRole    string      `json:"ram-role,omitempty"`
	Details    Details     `json:"instance,omitzero"`
	Image      Image       `json:"image,omitzero"`
	DNSConf    DNSConf     `json:"dns-conf,omitzero"`
	NTPConf    NTPConf     `json:"ntp-conf,omitzero"`
	WSUSServer WSUSServer  `json:"wsus-server,omitzero"`
	NICs       []NIC       `json:"network-interfaces"`
	Disks      []Disk      `json:"disks,omitempty"`
	PublicKeys []PublicKey `json:"public-keys,omitempty"`
	// UserData is served at user-data as is (base64 in JSON); empty: 404.
	UserData []byte `json:"user-data,omitempty"`
	// VendorData is served at /2016-01-01/vendor-data; empty: 404.
	VendorData []byte `json:"vendor-data,omitempty"`
	// IdentityDocument, when set, is served verbatim as the instance
	// identity document; empty: a document is derived from the fields.
	IdentityDocument string `json:"identity-document,omitempty"`
}

// Details holds the items under instance/.
type Details struct {
	InstanceType                  string `json:"instance-type,omitempty"`
	InstanceName                  string `json:"instance-name,omitempty"`
	MaxNetbwEgress                string `json:"max-netbw-egress,omitempty"`
	VirtualizationSolution        string `json:"virtualization-solution,omitempty"`
	VirtualizationSolutionVersion string `json:"virtualization-solution-version,omitempty"`
}

// Image holds the items under image/.
type Image struct {
	MarketPlace MarketPlace `json:"market-place,omitzero"`
}

// MarketPlace holds the items under image/market-place/.
type MarketPlace struct {
	ProductCode string `json:"product-code,omitempty"`
	ChargeType  string `json:"charge-type,omitempty"`
}

// DNSConf holds the items under dns-conf/.
type DNSConf struct {
	// Nameservers is served verbatim; the real service separates servers
	// with "\r\n".
	Nameservers string `json:"nameservers,omitempty"`
}

// NTPConf holds the items under ntp-conf/.
type NTPConf struct {
	NTPServers string `json:"ntp-servers,omitempty"`
}

// WSUSServer holds the items under wsus-server/.
type WSUSServer struct {
	WUServer       string `json:"wu-server,omitempty"`
	WUStatusServer string `json:"wu-status-server,omitempty"`
}

// NIC is one network interface, served under network/interfaces/macs/MAC/.
type NIC struct {
	// MAC is the directory name, in lowercase colon form.
	MAC                string `json:"mac"`
	NetworkInterfaceID string `json:"network-interface-id,omitempty"`
	PrimaryIPAddress   string `json:"primary-ip-address,omitempty"`
	// PrivateIPv4s is served as a compact JSON array of strings.
	PrivateIPv4s     []string `json:"private-ipv4s,omitempty"`
	Netmask          string   `json:"netmask,omitempty"`
	Gateway          string   `json:"gateway,omitempty"`
	VPCID            string   `json:"vpc-id,omitempty"`
	VPCCIDRBlock     string   `json:"vpc-cidr-block,omitempty"`
	VSwitchID        string   `json:"vswitch-id,omitempty"`
	VSwitchCIDRBlock string   `json:"vswitch-cidr-block,omitempty"`
	IPv4Prefixes     string   `json:"ipv4-prefixes,omitempty"`
	IPv6Prefixes     string   `json:"ipv6-prefixes,omitempty"`
}

// Disk is one disk, served under disks/ID/.
type Disk struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// PublicKey is one key pair, served as public-keys/ID/openssh-key.
type PublicKey struct {
	ID         string `json:"id"`
	OpenSSHKey string `json:"openssh-key"`
}

// defaultUserData is a gzip-compressed cloud-config, kept as fixed bytes so
// that the example file and the default stay identical across Go versions.
const defaultUserData = "H4sIAAAAAAAC/yzKsQoCMQwA0D1fEXC9IK7d/AZHcYhpbIttIpcecn69g66Pd5DuW" +
	"yZxe7QC1WMaD02YdTiZZ6UTzDb046YJz9H4eKlspXKDF8uTi0YCREKpq9sO62Yy8o+uscfUIbM" +
	"vqMb3rgsSmb+X/843+AYAAP//+NJ3KIEAAAA="

// DefaultInstance returns a new copy of the built-in sample instance: two
// NICs, a RAM role, a bound public IP, two disks, a key pair and gzip
// user-data.
func DefaultInstance() *Instance {
	ud, err := base64.StdEncoding.DecodeString(defaultUserData)
	if err != nil {
		panic("simulator: bad built-in user-data: " + err.Error())
	}
	return &Instance{
		InstanceID:     "i-bp1c7mxq2nd9ltws4k8e",
		Hostname:       "iZbp1c7mxq2nd9ltws4k8eZ",
		RegionID:       "cn-hangzhou",
		ZoneID:         "cn-hangzhou-i",
		OwnerAccountID: "1468031599423716",
		SerialNumber:   "b3f1c2d4-7e8a-4c5b-9d6e-0f1a2b3c4d5e",
		ImageID:        "aliyun_3_x64_20G_alibase_20240819.vhd",
		NetworkType:    "vpc",
		SourceAddress:  "http://mirrors.cloud.aliyuncs.com",
		KMSServer:      "kms.cloud.aliyuncs.com",
		PublicIPv4:     "47.98.116.23",
		RAMRole:        "EcsRamRoleDemo",
		Details:        defaultDetails(),
		Image: Image{MarketPlace: MarketPlace{
			ProductCode: "cmjj0326ab",
			ChargeType:  "PostPaid",
		}},
		DNSConf: DNSConf{Nameservers: "100.100.2.136\r\n100.100.2.138"},
		NTPConf: NTPConf{NTPServers: "ntp.cloud.aliyuncs.com\nntp1.cloud.aliyuncs.com"},
		WSUSServer: WSUSServer{
			WUServer:       "http://update.cloud.aliyuncs.com",
			WUStatusServer: "http://update.cloud.aliyuncs.com",
		},
		NICs:       defaultNICs(),
		Disks:      defaultDisks(),
		PublicKeys: defaultKeys(),
		UserData:   ud,
		VendorData: []byte("#cloud-config\nmanage_etc_hosts: true\n"),
	}
}

func defaultDetails() Details {
	return Details{
		InstanceType:                  "ecs.g7.large",
		InstanceName:                  "demo-node-1",
		MaxNetbwEgress:                "2048000",
		VirtualizationSolution:        "ECS Virt",
		VirtualizationSolutionVersion: "2.0",
	}
}

func defaultNICs() []NIC {
	return []NIC{{
		MAC:                "00:16:3e:0c:5a:7e",
		NetworkInterfaceID: "eni-bp1f2q8xk3m7ytb4wz6a",
		PrimaryIPAddress:   "192.168.0.10",
		PrivateIPv4s:       []string{"192.168.0.10"},
		Netmask:            "255.255.255.0",
		Gateway:            "192.168.0.253",
		VPCID:              "vpc-bp18k2j6q9xw3e5r7t1y",
		VPCCIDRBlock:       "192.168.0.0/16",
		VSwitchID:          "vsw-bp1m4n6b8v0c2x4z6l8k",
		VSwitchCIDRBlock:   "192.168.0.0/24",
		IPv4Prefixes:       "192.168.0.32/28",
		IPv6Prefixes:       "2001:db8:1234:1a00:1::/80",
	}, {
		MAC:                "00:16:3e:21:9b:d4",
		NetworkInterfaceID: "eni-bp1h7j9k1l3z5x7c9v2b",
		PrimaryIPAddress:   "192.168.1.20",
		PrivateIPv4s:       []string{"192.168.1.20", "192.168.1.21"},
		Netmask:            "255.255.255.0",
		Gateway:            "192.168.1.253",
		VPCID:              "vpc-bp18k2j6q9xw3e5r7t1y",
		VPCCIDRBlock:       "192.168.0.0/16",
		VSwitchID:          "vsw-bp1q2w3e4r5t6y7u8i9o",
		VSwitchCIDRBlock:   "192.168.1.0/24",
	}}
}

func defaultDisks() []Disk {
	return []Disk{
		{ID: "d-bp1a3s5d7f9g1h3j5k7l", Name: "system-disk"},
		{ID: "d-bp1z2x4c6v8b0n2m4q6w", Name: "data-disk-1"},
	}
}

func defaultKeys() []PublicKey {
	return []PublicKey{{
		ID: "skp-bp1r8t2y6u0i4o8p2a6s",
		OpenSSHKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc2b1o0ZmFrZWtleWZvcnRoZXNp" +
			"bXVsYXRvcg demo@ecs-metadata-mock",
	}}
}

// LoadInstance reads an Instance from a JSON file. Unknown fields, trailing
// data and invalid values are errors that name the file and the field.
func LoadInstance(path string) (*Instance, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load instance: %w", err)
	}
	inst, err := parseInstance(b)
	if err != nil {
		return nil, fmt.Errorf("load instance %s: %w", path, err)
	}
	return inst, nil
}

func parseInstance(b []byte) (*Instance, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var inst Instance
	if err := dec.Decode(&inst); err != nil {
		return nil, describeJSONError(b, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: unexpected data after the JSON object",
			position(b, dec.InputOffset()))
	}
	if err := inst.Validate(); err != nil {
		return nil, err
	}
	return &inst, nil
}

// describeJSONError adds a line and column to syntax errors; decoder errors
// about types and unknown fields already name the field.
func describeJSONError(b []byte, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("%s: %w", position(b, syn.Offset), err)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("%s: field %q: %w", position(b, typ.Offset), typ.Field, err)
	}
	return err
}

func position(b []byte, off int64) string {
	off = min(max(off, 0), int64(len(b)))
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(b[:off], '\n'))
	return fmt.Sprintf("line %d column %d", line, col)
}

// Validate reports the first problem that would stop the Instance from
// being served; the error wraps ErrInvalidInstance and names the field.
func (in *Instance) Validate() error {
	checks := []func() error{in.validateIDs, in.validateNICs, in.validateDisks,
		in.validateKeys, in.validateDocument}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidInstance, field, fmt.Sprintf(format, args...))
}

func (in *Instance) validateIDs() error {
	required := []struct{ field, value string }{
		{"instance-id", in.InstanceID},
		{"region-id", in.RegionID},
		{"zone-id", in.ZoneID},
	}
	for _, r := range required {
		if r.value == "" {
			return invalid(r.field, "is required")
		}
	}
	if in.PublicIPv4 != "" {
		if _, err := netip.ParseAddr(in.PublicIPv4); err != nil {
			return invalid("public-ipv4", "%q is not an IP address", in.PublicIPv4)
		}
	}
	if in.RAMRole != "" && !validSegment(in.RAMRole) {
		return invalid("ram-role", "%q cannot be a path segment", in.RAMRole)
	}
	return nil
}

func (in *Instance) validateNICs() error {
	if len(in.NICs) == 0 {
		return invalid("network-interfaces", "at least one NIC is required")
	}
	seen := map[string]bool{}
	for i, n := range in.NICs {
		field := fmt.Sprintf("network-interfaces[%d].mac", i)
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 || hw.String() != n.MAC {
			return invalid(field, "%q is not a MAC in lowercase colon form "+
				"like 00:16:3e:0c:5a:7e", n.MAC)
		}
		if seen[n.MAC] {
			return invalid(field, "%q appears twice", n.MAC)
		}
		seen[n.MAC] = true
	}
	return nil
}

func (in *Instance) validateDisks() error {
	ids := make([]string, len(in.Disks))
	for i, d := range in.Disks {
		ids[i] = d.ID
	}
	return validateIDList("disks", ids)
}

func (in *Instance) validateKeys() error {
	ids := make([]string, len(in.PublicKeys))
	for i, k := range in.PublicKeys {
		if k.OpenSSHKey == "" {
			return invalid(fmt.Sprintf("public-keys[%d].openssh-key", i), "is required")
		}
		ids[i] = k.ID
	}
	return validateIDList("public-keys", ids)
}

func validateIDList(list string, ids []string) error {
	for i, id := range ids {
		field := fmt.Sprintf("%s[%d].id", list, i)
		if !validSegment(id) {
			return invalid(field, "%q cannot be a path segment", id)
		}
		if slices.Index(ids, id) != i {
			return invalid(field, "%q appears twice", id)
		}
	}
	return nil
}

func (in *Instance) validateDocument() error {
	if in.IdentityDocument != "" && !json.Valid([]byte(in.IdentityDocument)) {
		return invalid("identity-document", "is not valid JSON")
	}
	return nil
}

// validSegment reports whether s can name one entry of a listing.
func validSegment(s string) bool {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\?#%") {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// clone returns a deep copy, so that a caller's later edits never race
// with the server.
func (in *Instance) clone() *Instance {
	c := *in
	c.NICs = slices.Clone(in.NICs)
	for i := range c.NICs {
		c.NICs[i].PrivateIPv4s = slices.Clone(c.NICs[i].PrivateIPv4s)
	}
	c.Disks = slices.Clone(in.Disks)
	c.PublicKeys = slices.Clone(in.PublicKeys)
	c.UserData = bytes.Clone(in.UserData)
	c.VendorData = bytes.Clone(in.VendorData)
	return &c
}
