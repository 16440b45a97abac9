package agent

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

const examplePolicy = `
# only group 1500 (app) reads credentials; pods read identity, no credentials
allow gid:1500        /latest/meta-data/ram/security-credentials/
deny  cidr:10.0.0.0/8 /latest/meta-data/ram/
allow cidr:10.0.0.0/8 /latest/meta-data/instance-id
deny  cidr:10.0.0.0/8 /
deny  any             /latest/meta-data/ram/security-credentials/
`

func TestPolicyDecisions(t *testing.T) {
	p, err := ParsePolicy(strings.NewReader(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	app := &Consumer{Unix: true, UID: 1000, GID: 100, Groups: []uint32{100, 1500}}
	other := &Consumer{Unix: true, UID: 1001, GID: 100}
	pod := &Consumer{Addr: netip.MustParseAddr("10.1.2.3")}
	local := &Consumer{Addr: netip.MustParseAddr("127.0.0.1")}
	const creds = "/latest/meta-data/ram/security-credentials/EcsRamRoleDemo"
	tests := []struct {
		who   *Consumer
		path  string
		allow bool
		line  int
	}{
		{app, creds, true, 3},
		{app, "/latest/meta-data/ram/security-credentials", true, 3},
		{other, creds, false, 7},
		{other, "/latest/meta-data/Ram/security-credentials/EcsRamRoleDemo", false, 7},
		{other, "/2016-01-01/meta-data/ram/security-credentials/EcsRamRoleDemo", false, 7},
		{other, "/latest/meta-data/instance-id", true, 0},
		{pod, "/latest/meta-data/instance-id", true, 5},
		{pod, creds, false, 4},
		{pod, "/latest/meta-data/RAM/security-credentials/", false, 4},
		{pod, "/latest/user-data", false, 6},
		{local, creds, false, 7},
		{local, "/latest/meta-data/region-id", true, 0},
	}
	for _, tt := range tests {
		allow, line := p.Allow(tt.who, tt.path)
		if allow != tt.allow || line != tt.line {
			t.Errorf("Allow(%v, %s) = %v (line %d), want %v (line %d)", tt.who, tt.path, allow,
				line, tt.allow, tt.line)
		}
	}
}

func TestPolicyErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		text, want string
	}{
		{"allow any /\npermit any /", "line 2: action \"permit\""},
		{"allow cidr:10.0.0.0/33 /", "line 1: subject \"cidr:10.0.0.0/33\": bad CIDR"},
		{"allow cidr:10.0.0.1/8 /", "line 1: subject \"cidr:10.0.0.1/8\": bad CIDR: host bits"},
		{"\n\nallow group:no-such-group-here /", "line 3: group \"no-such-group-here\": not found"},
		{"allow user:no-such-user-here /", "line 1: user \"no-such-user-here\": not found"},
		{"allow uid:x /", "line 1: uid \"x\": want a number"},
		{"allow pod:1 /", "line 1: subject \"pod:1\": unknown kind"},
		{"allow any latest/", "line 1: path prefix"},
		{"allow any / extra", "line 1: want ACTION SUBJECT PATH-PREFIX"},
	}
	for _, tt := range tests {
		_, err := ParsePolicy(strings.NewReader(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePolicy(%q) = %v, want an error containing %q", tt.text, err, tt.want)
		}
	}
}

func TestPolicyInTheAgent(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy")
	if err := os.WriteFile(file, []byte(examplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, simulator.Options{}, func(c *Config) { c.PolicyFile = file })
	get := func(from, path string) *httptest.ResponseRecorder {
		return serveFrom(r.agent, http.MethodGet, path, from)
	}
	w := get("10.9.9.9", credsPath)
	if w.Code != 403 || !strings.Contains(w.Body.String(), "policy") ||
		strings.Contains(w.Body.String(), "AccessKey") {
		t.Errorf("pod reading credentials: %d %q, want 403 naming the policy", w.Code, w.Body)
	}
	if w := get("10.9.9.9", "/latest/meta-data/instance-id"); w.Code != 200 {
		t.Errorf("pod reading instance-id: %d, want 200", w.Code)
	}
	if n := r.upstreamGets(credsPath); n != 0 {
		t.Errorf("a denied read reached upstream %d times", n)
	}
}

func TestPolicyFileValidatedAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy")
	_ = os.WriteFile(file, []byte("allow any /\ndeny cidr:nope /\n"), 0o600)
	c := Defaults()
	c.PolicyFile = file
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--policy") ||
		!strings.Contains(err.Error(), "line 2") {
		t.Errorf("Validate() = %v, want an error naming --policy and line 2", err)
	}
}
