package simulator

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Content types of answers.
const (
	ctypeText   = "text/plain; charset=utf-8"
	ctypeJSON   = "application/json"
	ctypeBinary = "application/octet-stream"
	ctypeHTML   = "text/html"
)

// spotLayout is how instance/spot/termination-time is written.
const spotLayout = "2006-01-02T15:04:05Z"

// leafKind says how a leaf's answer is made.
type leafKind int

const (
	kindStatic      leafKind = iota // body as stored
	kindCredentials                 // the current credentials of the role
	kindPKCS7                       // a signature of body (the document)
)

// node is one entry of the served tree. A directory has kids and its body
// is its rendered listing. Trees are immutable once built: a change builds
// a new tree.
type node struct {
	kids   map[string]*node
	hidden bool // answered but not listed (meta-data/all)
	body   []byte
	ctype  string
	kind   leafKind
}

// state is what a tree is built from.
type state struct {
	inst     *Instance
	publicIP string
	spot     time.Time
}

func newDir() *node {
	return &node{kids: map[string]*node{}, ctype: ctypeText}
}

func leaf(body []byte, ctype string) *node {
	return &node{body: body, ctype: ctype}
}

// put stores n at the slash-separated path p below d, making directories.
func (d *node) put(p string, n *node) {
	segs := strings.Split(p, "/")
	for _, s := range segs[:len(segs)-1] {
		k := d.kids[s]
		if k == nil {
			k = newDir()
			d.kids[s] = k
		}
		d = k
	}
	d.kids[segs[len(segs)-1]] = n
}

// text stores a text leaf unless v is empty, so empty items are 404.
func (d *node) text(p, v string) {
	if v != "" {
		d.put(p, leaf([]byte(v), ctypeText))
	}
}

// render fills in the listing of d and of every directory below it:
// names sorted, directories with a trailing slash, one per line.
func (d *node) render() {
	names := make([]string, 0, len(d.kids))
	for name, k := range d.kids {
		if k.kids != nil {
			k.render()
			name += "/"
		}
		if !k.hidden {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	d.body = []byte(strings.Join(names, "\n"))
}

// buildTree returns the root of everything served for st.
func buildTree(st state) *node {
	md := buildMetaData(st)
	md.render()
	doc := identityDocument(st.inst)
	root := newDir()
	root.put("latest/meta-data", md)
	root.put("latest/dynamic/instance-identity/document", leaf(doc, ctypeJSON))
	root.put("latest/dynamic/instance-identity/pkcs7",
		&node{body: doc, ctype: ctypeText, kind: kindPKCS7})
	root.put("2016-01-01/meta-data", versionedMetaData(md))
	if len(st.inst.UserData) > 0 {
		root.put("latest/user-data", leaf(st.inst.UserData, ctypeBinary))
		root.put("2016-01-01/user-data", leaf(st.inst.UserData, ctypeBinary))
	}
	if len(st.inst.VendorData) > 0 {
		root.put("2016-01-01/vendor-data", leaf(st.inst.VendorData, ctypeBinary))
	}
	root.render()
	return root
}

// versionedMetaData is md plus the unlisted all document.
func versionedMetaData(md *node) *node {
	v := &node{kids: map[string]*node{}, body: md.body, ctype: md.ctype}
	for name, k := range md.kids {
		v.kids[name] = k
	}
	all := leaf(allDocument(md), ctypeJSON)
	all.hidden = true
	v.kids["all"] = all
	return v
}

func buildMetaData(st state) *node {
	in := st.inst
	md := newDir()
	for _, kv := range scalarItems(in) {
		md.text(kv[0], kv[1])
	}
	md.text("public-ipv4", st.publicIP)
	md.text("eipv4", st.publicIP)
	if !st.spot.IsZero() {
		md.text("instance/spot/termination-time", st.spot.UTC().Format(spotLayout))
	}
	putPrimaryNIC(md, in.NICs[0])
	for _, n := range in.NICs {
		putNIC(md, n)
	}
	for _, d := range in.Disks {
		md.text("disks/"+d.ID+"/id", d.ID)
		md.text("disks/"+d.ID+"/name", d.Name)
	}
	for _, k := range in.PublicKeys {
		md.text("public-keys/"+k.ID+"/openssh-key", k.OpenSSHKey)
	}
	if in.RAMRole != "" {
		md.put("ram/security-credentials/"+in.RAMRole,
			&node{ctype: ctypeJSON, kind: kindCredentials})
	}
	return md
}

// scalarItems lists the items that map one field to one path.
func scalarItems(in *Instance) [][2]string {
	return [][2]string{
		{"instance-id", in.InstanceID},
		{"hostname", in.Hostname},
		{"region-id", in.RegionID},
		{"zone-id", in.ZoneID},
		{"owner-account-id", in.OwnerAccountID},
		{"serial-number", in.SerialNumber},
		{"image-id", in.ImageID},
		{"network-type", in.NetworkType},
		{"source-address", in.SourceAddress},
		{"kms-server", in.KMSServer},
		{"instance/instance-type", in.Details.InstanceType},
		{"instance/instance-name", in.Details.InstanceName},
		{"instance/max-netbw-egress", in.Details.MaxNetbwEgress},
		{"instance/virtualization-solution", in.Details.VirtualizationSolution},
		{"instance/virtualization-solution-version",
			in.Details.VirtualizationSolutionVersion},
		{"image/market-place/product-code", in.Image.MarketPlace.ProductCode},
		{"image/market-place/charge-type", in.Image.MarketPlace.ChargeType},
		{"dns-conf/nameservers", in.DNSConf.Nameservers},
		{"ntp-conf/ntp-servers", in.NTPConf.NTPServers},
		{"wsus-server/wu-server", in.WSUSServer.WUServer},
		{"wsus-server/wu-status-server", in.WSUSServer.WUStatusServer},
	}
}

func putPrimaryNIC(md *node, n NIC) {
	md.text("mac", n.MAC)
	md.text("private-ipv4", n.PrimaryIPAddress)
	md.text("vpc-id", n.VPCID)
	md.text("vpc-cidr-block", n.VPCCIDRBlock)
	md.text("vswitch-id", n.VSwitchID)
	md.text("vswitch-cidr-block", n.VSwitchCIDRBlock)
}

func putNIC(md *node, n NIC) {
	dir := "network/interfaces/macs/" + n.MAC + "/"
	items := [][2]string{
		{"network-interface-id", n.NetworkInterfaceID},
		{"primary-ip-address", n.PrimaryIPAddress},
		{"netmask", n.Netmask},
		{"gateway", n.Gateway},
		{"vpc-id", n.VPCID},
		{"vpc-cidr-block", n.VPCCIDRBlock},
		{"vswitch-id", n.VSwitchID},
		{"vswitch-cidr-block", n.VSwitchCIDRBlock},
		{"ipv4-prefixes", n.IPv4Prefixes},
		{"ipv6-prefixes", n.IPv6Prefixes},
	}
	for _, kv := range items {
		md.text(dir+kv[0], kv[1])
	}
	if len(n.PrivateIPv4s) > 0 {
		md.text(dir+"private-ipv4s", string(marshal(n.PrivateIPv4s)))
	}
}

// identityDocument is the configured document or one derived from in.
func identityDocument(in *Instance) []byte {
	if in.IdentityDocument != "" {
		return []byte(in.IdentityDocument)
	}
	return marshal(struct {
		ZoneID       string `json:"zone-id"`
		SerialNumber string `json:"serial-number"`
		InstanceID   string `json:"instance-id"`
		RegionID     string `json:"region-id"`
		PrivateIPv4  string `json:"private-ipv4"`
		OwnerAccount string `json:"owner-account-id"`
		MAC          string `json:"mac"`
		ImageID      string `json:"image-id"`
		InstanceType string `json:"instance-type"`
	}{in.ZoneID, in.SerialNumber, in.InstanceID, in.RegionID,
		in.NICs[0].PrimaryIPAddress, in.OwnerAccountID, in.NICs[0].MAC,
		in.ImageID, in.Details.InstanceType})
}

// allDocument renders md as one JSON object: directories are objects and
// leaves are strings. Credentials are left out, and so is a directory left
// empty by that, as a document meant for logging must not carry secrets.
func allDocument(md *node) []byte {
	v, _ := jsonTree(md)
	return marshal(v)
}

func jsonTree(n *node) (any, bool) {
	if n.kids == nil {
		return string(n.body), n.kind == kindStatic
	}
	obj := map[string]any{}
	for name, k := range n.kids {
		if v, ok := jsonTree(k); ok {
			obj[name] = v
		}
	}
	return obj, len(obj) > 0
}

// marshal is json.Marshal without HTML escaping, for values that cannot fail.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("simulator: marshal: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// lookup finds the node for a request path, given escaped as received.
// Empty, dot and dot-dot segments and escaped slashes match nothing, so a
// non-canonical path is never answered with another path's value. A
// trailing slash is accepted on directories only. The ram segment under
// meta-data matches in any case, as the real service does.
func (d *node) lookup(escaped string) (*node, bool) {
	rest, ok := strings.CutPrefix(escaped, "/")
	if !ok {
		return nil, false
	}
	if rest == "" {
		return d, true
	}
	rest, slash := strings.CutSuffix(rest, "/")
	segs := strings.Split(rest, "/")
	n := d
	for i, s := range segs {
		name, err := url.PathUnescape(s)
		if err != nil || n.kids == nil {
			return nil, false
		}
		if i == 2 && segs[1] == "meta-data" && strings.EqualFold(name, "ram") {
			name = "ram"
		}
		if n = n.kids[name]; n == nil {
			return nil, false
		}
	}
	return n, !slash || n.kids != nil
}
