package simulator_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

const topListing = "disks/\ndns-conf/\neipv4\nhostname\nimage-id\nimage/\n" +
	"instance-id\ninstance/\nkms-server\nmac\nnetwork-type\nnetwork/\nntp-conf/\n" +
	"owner-account-id\nprivate-ipv4\npublic-ipv4\npublic-keys/\nram/\nregion-id\n" +
	"serial-number\nsource-address\nvpc-cidr-block\nvpc-id\nvswitch-cidr-block\n" +
	"vswitch-id\nwsus-server/\nzone-id"

func TestListings(t *testing.T) {
	e := start(t, simulator.Options{})
	tests := []struct{ path, want string }{
		{"/", "2016-01-01/\nlatest/"},
		{"/latest", "dynamic/\nmeta-data/\nuser-data"},
		{"/latest/", "dynamic/\nmeta-data/\nuser-data"},
		{"/latest/meta-data", topListing},
		{"/latest/meta-data/", topListing},
		{"/latest/meta-data?", topListing},
		{"/2016-01-01/meta-data/", topListing},
		{"/2016-01-01", "meta-data/\nuser-data\nvendor-data"},
		{md + "network/interfaces/macs/", mac0 + "/\n" + mac1 + "/"},
		{md + "network/interfaces/macs", mac0 + "/\n" + mac1 + "/"},
		{md + "network/interfaces/macs/" + mac1 + "/", "gateway\nnetmask\n" +
			"network-interface-id\nprimary-ip-address\nprivate-ipv4s\nvpc-cidr-block\n" +
			"vpc-id\nvswitch-cidr-block\nvswitch-id"},
		{md + "ram/", "security-credentials/"},
		{md + "ram/security-credentials/", role},
		{md + "ram/security-credentials", role},
		{md + "Ram/security-credentials/", role},
		{md + "instance/", "instance-name\ninstance-type\nmax-netbw-egress\n" +
			"virtualization-solution\nvirtualization-solution-version"},
		{md + "disks/", "d-bp1a3s5d7f9g1h3j5k7l/\nd-bp1z2x4c6v8b0n2m4q6w/"},
		{md + "disks/d-bp1a3s5d7f9g1h3j5k7l", "id\nname"},
		{md + "public-keys/", "skp-bp1r8t2y6u0i4o8p2a6s/"},
		{md + "image/market-place/", "charge-type\nproduct-code"},
		{"/latest/dynamic/", "instance-identity/"},
		{"/latest/dynamic/instance-identity/", "document\npkcs7"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := e.get(tt.path)
			want200(t, "listing", r, tt.want)
			if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	e := start(t, simulator.Options{})
	cred, _ := e.sim.Value(credPath)
	tests := []struct {
		name, path string
		want       int
		body       string // checked when not empty
	}{
		{"trailing question mark", md + "instance-id?", 200, "i-bp1c7mxq2nd9ltws4k8e"},
		{"other query ignored", md + "region-id?x=1", 200, "cn-hangzhou"},
		{"capital Ram", md + "Ram/security-credentials/" + role + "?", 200, string(cred)},
		{"upper RAM", md + "RAM/security-credentials/" + role, 200, string(cred)},
		{"2016 Ram", "/2016-01-01/meta-data/Ram/security-credentials/" + role, 200,
			string(cred)},
		{"other segments exact", md + "Instance-id", 404, ""},
		{"role name exact", md + "ram/security-credentials/ecsramroledemo", 404, ""},
		{"escaped colons", md + "network/interfaces/macs/00%3A16%3A3e%3A0c%3A5a%3A7e/" +
			"gateway", 200, "192.168.0.253"},
		{"leaf with slash", md + "instance-id/", 404, ""},
		{"double slash inside", md + "/instance-id", 404, ""},
		{"double slash first", "//latest/meta-data/instance-id", 404, ""},
		{"only slashes", "//", 404, ""},
		{"dot dot", md + "../meta-data/instance-id", 404, ""},
		{"dot", md + "./instance-id", 404, ""},
		{"escaped slash", "/latest/meta-data%2Finstance-id", 404, ""},
		{"backslash", "/latest/meta-data%5Cinstance-id", 404, ""},
		{"missing", md + "no-such-item", 404, ""},
		{"all only under 2016", md + "all", 404, ""},
		{"no vendor-data in latest", "/latest/vendor-data", 404, ""},
		{"token path read", "/latest/api/", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(tt.path)
			if r.status != tt.want || (tt.body != "" && r.body != tt.body) {
				t.Fatalf("got %d %q, want %d %q", r.status, r.body, tt.want, tt.body)
			}
			if tt.want == 404 && (r.header.Get("Content-Type") != "text/html" ||
				!strings.Contains(r.body, "<html>")) {
				t.Errorf("404 answer %q %q is not HTML", r.header.Get("Content-Type"), r.body)
			}
		})
	}
}

func TestNoRedirects(t *testing.T) {
	e := start(t, simulator.Options{})
	for _, p := range []string{"/latest", "/latest/meta-data", "/latest/meta-data?",
		md + "network", md + "network/interfaces/macs/" + mac0, "/2016-01-01/meta-data"} {
		if r := e.get(p); r.status != http.StatusOK || r.header.Get("Location") != "" {
			t.Errorf("%s: status %d Location %q, want 200 and none",
				p, r.status, r.header.Get("Location"))
		}
	}
}

// vendorItems is every item of the vendor's table, with the placeholders
// replaced by the default instance's values (spot termination aside).
var vendorItems = []string{
	"dns-conf/nameservers", "hostname", "instance/instance-type",
	"instance/instance-name", "image-id", "image/market-place/product-code",
	"image/market-place/charge-type", "instance-id", "mac", "network-type",
	"network/interfaces/macs/" + mac0 + "/network-interface-id",
	"network/interfaces/macs/" + mac0 + "/netmask",
	"network/interfaces/macs/" + mac0 + "/vswitch-cidr-block",
	"network/interfaces/macs/" + mac0 + "/vpc-cidr-block",
	"network/interfaces/macs/" + mac0 + "/private-ipv4s",
	"network/interfaces/macs/" + mac0 + "/vswitch-id",
	"network/interfaces/macs/" + mac0 + "/vpc-id",
	"network/interfaces/macs/" + mac0 + "/primary-ip-address",
	"network/interfaces/macs/" + mac0 + "/gateway",
	"instance/max-netbw-egress",
	"network/interfaces/macs/" + mac0 + "/ipv4-prefixes",
	"network/interfaces/macs/" + mac0 + "/ipv6-prefixes",
	"disks/d-bp1a3s5d7f9g1h3j5k7l/id", "disks/d-bp1a3s5d7f9g1h3j5k7l/name",
	"private-ipv4", "public-ipv4", "eipv4", "ntp-conf/ntp-servers",
	"owner-account-id", "region-id", "zone-id",
	"public-keys/skp-bp1r8t2y6u0i4o8p2a6s/openssh-key", "serial-number",
	"source-address", "kms-server", "wsus-server/wu-server",
	"wsus-server/wu-status-server", "vpc-id", "vpc-cidr-block",
	"vswitch-cidr-block", "vswitch-id", "ram/security-credentials/" + role,
	"instance/virtualization-solution", "instance/virtualization-solution-version",
}

func TestVendorItems(t *testing.T) {
	e := start(t, simulator.Options{})
	tok := e.token("600")
	for _, item := range vendorItems {
		for _, prefix := range []string{md, "/2016-01-01/meta-data/"} {
			t.Run(prefix+item, func(t *testing.T) {
				r := e.get(prefix+item, tokenName, tok)
				want, ok := e.sim.Value(prefix + item)
				if !ok || r.status != http.StatusOK || r.body == "" || r.body != string(want) {
					t.Errorf("got %d %q, Value %q %v", r.status, r.body, want, ok)
				}
			})
		}
	}
}

func TestEveryListedLeafAnswers(t *testing.T) {
	e := start(t, simulator.Options{})
	leaves := crawl(t, e.sim, md)
	if len(leaves) < len(vendorItems) {
		t.Fatalf("crawl found %d leaves, want at least %d", len(leaves), len(vendorItems))
	}
	for _, p := range leaves {
		if r := e.get(p); r.status != http.StatusOK || r.body == "" {
			t.Errorf("%s: %d %q", p, r.status, r.body)
		}
	}
}

func TestByteExactValues(t *testing.T) {
	e := start(t, simulator.Options{})
	nic := md + "network/interfaces/macs/"
	tests := []struct{ path, want string }{
		{md + "dns-conf/nameservers", "100.100.2.136\r\n100.100.2.138"},
		{nic + mac0 + "/private-ipv4s", `["192.168.0.10"]`},
		{nic + mac1 + "/private-ipv4s", `["192.168.1.20","192.168.1.21"]`},
		{md + "mac", mac0},
		{md + "private-ipv4", "192.168.0.10"},
		{md + "public-ipv4", "47.98.116.23"},
		{md + "eipv4", "47.98.116.23"},
		{md + "instance/virtualization-solution", "ECS Virt"},
		{"/2016-01-01/vendor-data", "#cloud-config\nmanage_etc_hosts: true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			want200(t, tt.path, e.get(tt.path), tt.want)
		})
	}
}

func TestUserData(t *testing.T) {
	e := start(t, simulator.Options{})
	want := simulator.DefaultInstance().UserData
	for _, p := range []string{"/latest/user-data", "/2016-01-01/user-data"} {
		r := e.get(p, "Accept-Encoding", "gzip")
		if r.status != 200 || !bytes.Equal([]byte(r.body), want) {
			t.Errorf("%s: %d, %d bytes, want the %d stored bytes", p, r.status,
				len(r.body), len(want))
		}
		if ct, ce := r.header.Get("Content-Type"), r.header.Get("Content-Encoding"); ct !=
			"application/octet-stream" || ce != "" {
			t.Errorf("%s: Content-Type %q Content-Encoding %q", p, ct, ce)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(want))
	if err != nil {
		t.Fatalf("default user-data is not gzip: %v", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.HasPrefix(plain, []byte("#cloud-config\n")) {
		t.Errorf("default user-data unpacks to %q, %v; want a cloud-config", plain, err)
	}
}

func TestUserDataAbsent(t *testing.T) {
	inst := simulator.DefaultInstance()
	inst.UserData, inst.VendorData = nil, nil
	e := start(t, simulator.Options{Instance: inst})
	for _, p := range []string{"/latest/user-data", "/2016-01-01/vendor-data"} {
		if r := e.get(p); r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, r.status)
		}
	}
	want200(t, "listing", e.get("/latest/"), "dynamic/\nmeta-data/")
}

func TestIdentity(t *testing.T) {
	e := start(t, simulator.Options{})
	doc := e.get("/latest/dynamic/instance-identity/document")
	var fields map[string]string
	if err := json.Unmarshal([]byte(doc.body), &fields); err != nil {
		t.Fatalf("document %q: %v", doc.body, err)
	}
	if fields["instance-id"] != "i-bp1c7mxq2nd9ltws4k8e" || fields["mac"] != mac0 ||
		doc.header.Get("Content-Type") != "application/json" {
		t.Errorf("document %q, Content-Type %q", doc.body, doc.header.Get("Content-Type"))
	}
	sig := func(q string) string {
		p := "/latest/dynamic/instance-identity/pkcs7" + q
		r := e.get(p)
		if v, _ := e.sim.Value(p); r.status != 200 || r.body != string(v) || r.body == "" {
			t.Fatalf("%s: %d %q, Value %q", p, r.status, r.body, v)
		}
		return r.body
	}
	a, b, none := sig("?audience=aa"), sig("?audience=bb"), sig("")
	if a == b || a == none || b == none {
		t.Errorf("signatures do not depend on the audience: %q %q %q", a, b, none)
	}
	if again := sig("?audience=aa"); again != a {
		t.Errorf("signature not deterministic: %q then %q", a, again)
	}
}

func TestIdentityDocumentOverride(t *testing.T) {
	inst := simulator.DefaultInstance()
	inst.IdentityDocument = `{"instance-id":"i-mirror"}`
	e := start(t, simulator.Options{Instance: inst})
	want200(t, "document", e.get("/latest/dynamic/instance-identity/document"),
		inst.IdentityDocument)
	def := start(t, simulator.Options{})
	p := "/latest/dynamic/instance-identity/pkcs7?audience=x"
	if e.get(p).body == def.get(p).body {
		t.Error("signature does not depend on the document")
	}
}

func TestMetaDataAll(t *testing.T) {
	e := start(t, simulator.Options{})
	r := e.get("/2016-01-01/meta-data/all")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("all: %d %q", r.status, r.header.Get("Content-Type"))
	}
	var all struct {
		InstanceID string `json:"instance-id"`
		DNSConf    struct {
			Nameservers string `json:"nameservers"`
		} `json:"dns-conf"`
		Network struct {
			Interfaces struct {
				Macs map[string]map[string]string `json:"macs"`
			} `json:"interfaces"`
		} `json:"network"`
		RAM any `json:"ram"`
	}
	if err := json.Unmarshal([]byte(r.body), &all); err != nil {
		t.Fatalf("all is not JSON: %v", err)
	}
	macs := all.Network.Interfaces.Macs
	if all.InstanceID != "i-bp1c7mxq2nd9ltws4k8e" || len(macs) != 2 ||
		macs[mac1]["private-ipv4s"] != `["192.168.1.20","192.168.1.21"]` ||
		all.DNSConf.Nameservers != "100.100.2.136\r\n100.100.2.138" {
		t.Errorf("all has unexpected content: %s", r.body)
	}
	if all.RAM != nil {
		t.Errorf("all carries the ram tree (credentials): %v", all.RAM)
	}
	cred, _ := e.sim.Credentials(role)
	if strings.Contains(r.body, cred.AccessKeySecret) {
		t.Error("all carries a credential secret")
	}
}
