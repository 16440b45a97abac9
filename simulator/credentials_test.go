package simulator_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

var credTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

// fetchCreds GETs the credentials and checks their shape.
func fetchCreds(t *testing.T, e *env) simulator.Credentials {
	t.Helper()
	r := e.get(credPath)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("credentials: %d %q", r.status, r.header.Get("Content-Type"))
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	var c simulator.Credentials
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("credentials %q: %v", r.body, err)
	}
	if c.Code != "Success" || c.AccessKeyId == "" || c.AccessKeySecret == "" ||
		c.SecurityToken == "" || !credTime.MatchString(c.LastUpdated) ||
		!credTime.MatchString(c.Expiration) {
		t.Fatalf("credentials incomplete or badly formatted: %+v", c)
	}
	return c
}

func parseCredTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return v
}

func distinct(a, b simulator.Credentials) bool {
	return a.AccessKeyId != b.AccessKeyId && a.AccessKeySecret != b.AccessKeySecret &&
		a.SecurityToken != b.SecurityToken
}

// TestCredentialRotation is a timeline: at +N the served set is the first
// one or a new one issued at that moment.
func TestCredentialRotation(t *testing.T) {
	tests := []struct {
		name           string
		lifetime, rb   time.Duration
		at             time.Duration // offset from t0 of the step
		wantNew        bool
		wantLastUpdate time.Duration // offset from t0 of LastUpdated
	}{
		{"defaults, fresh", 0, 0, 0, false, 0},
		{"defaults, 1h1m left", 0, 0, 4*time.Hour + 59*time.Minute, false, 0},
		{"defaults, exactly 1h left", 0, 0, 5 * time.Hour, false, 0},
		{"defaults, 59m left", 0, 0, 5*time.Hour + time.Minute, true, 5*time.Hour + time.Minute},
		{"defaults, past expiry", 0, 0, 7 * time.Hour, true, 7 * time.Hour},
		{"short, kept", 30 * time.Minute, 5 * time.Minute, 24 * time.Minute, false, 0},
		{"short, rotated", 30 * time.Minute, 5 * time.Minute, 26 * time.Minute, true,
			26 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, simulator.Options{CredentialLifetime: tt.lifetime,
				RotateBefore: tt.rb})
			first := fetchCreds(t, e)
			life := tt.lifetime
			if life == 0 {
				life = simulator.DefaultCredentialLifetime
			}
			if got := parseCredTime(t, first.Expiration).Sub(
				parseCredTime(t, first.LastUpdated)); got != life {
				t.Errorf("Expiration - LastUpdated = %v, want %v", got, life)
			}
			e.clock.Advance(tt.at)
			got := fetchCreds(t, e)
			if rotated := got != first; rotated != tt.wantNew {
				t.Fatalf("rotated = %v, want %v", rotated, tt.wantNew)
			}
			if tt.wantNew && !distinct(first, got) {
				t.Errorf("new set reuses a value: %+v then %+v", first, got)
			}
			if lu := parseCredTime(t, got.LastUpdated); !lu.Equal(t0.Add(tt.wantLastUpdate)) {
				t.Errorf("LastUpdated %v, want %v", lu, t0.Add(tt.wantLastUpdate))
			}
			if served, ok := e.sim.Credentials(role); !ok || served != got {
				t.Errorf("Credentials(role) = %+v %v, want the served set", served, ok)
			}
		})
	}
}

func TestRotateCredentials(t *testing.T) {
	e := start(t, simulator.Options{})
	a := fetchCreds(t, e)
	e.sim.RotateCredentials()
	b := fetchCreds(t, e)
	if !distinct(a, b) {
		t.Errorf("RotateCredentials kept a value: %+v then %+v", a, b)
	}
	if v, _ := e.sim.Value(credPath); string(v) != e.get(credPath).body {
		t.Error("Value differs from the served credentials")
	}
}

func TestFractionalNowIsTruncated(t *testing.T) {
	e := start(t, simulator.Options{})
	e.clock.Advance(7*time.Hour + 1500*time.Millisecond) // forces rotation
	c := fetchCreds(t, e)
	if c.LastUpdated != "2026-12-04T23:09:01Z" || c.Expiration != "2026-12-05T05:09:01Z" {
		t.Errorf("LastUpdated %q Expiration %q", c.LastUpdated, c.Expiration)
	}
}

func TestCredentialsUnknownRole(t *testing.T) {
	e := start(t, simulator.Options{})
	if _, ok := e.sim.Credentials("OtherRole"); ok {
		t.Error("Credentials(OtherRole) reported true")
	}
	inst := simulator.DefaultInstance()
	inst.RAMRole = ""
	noRole := start(t, simulator.Options{Instance: inst})
	if r := noRole.get(md + "ram/security-credentials/"); r.status != http.StatusNotFound {
		t.Errorf("no role: listing status %d, want 404", r.status)
	}
	if _, ok := noRole.sim.Credentials(""); ok {
		t.Error("Credentials(\"\") reported true without a role")
	}
}
