package simulator_test

import (
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

const (
	ttlName   = "X-aliyun-ecs-metadata-token-ttl-seconds"
	tokenName = "X-aliyun-ecs-metadata-token"
)

func TestTokenPUT(t *testing.T) {
	e := start(t, simulator.Options{})
	tests := []struct {
		name    string
		headers []string
		want    int
	}{
		{"min ttl", []string{ttlName, "1"}, http.StatusOK},
		{"max ttl", []string{ttlName, "21600"}, http.StatusOK},
		{"leading zero", []string{ttlName, "060"}, http.StatusOK},
		{"missing ttl", nil, http.StatusBadRequest},
		{"empty ttl", []string{ttlName, ""}, http.StatusBadRequest},
		{"letters", []string{ttlName, "abc"}, http.StatusBadRequest},
		{"zero", []string{ttlName, "0"}, http.StatusBadRequest},
		{"above max", []string{ttlName, "21601"}, http.StatusBadRequest},
		{"fraction", []string{ttlName, "1.5"}, http.StatusBadRequest},
		{"negative", []string{ttlName, "-1"}, http.StatusBadRequest},
		{"plus sign", []string{ttlName, "+5"}, http.StatusBadRequest},
		{"huge", []string{ttlName, "99999999999999999999999"}, http.StatusBadRequest},
		{"list in one line", []string{ttlName, "60, 60"}, http.StatusBadRequest},
		{"repeated", []string{ttlName, "60", ttlName, "60"}, http.StatusBadRequest},
		{"forwarded", []string{ttlName, "60", "X-Forwarded-For", "10.0.0.1"},
			http.StatusForbidden},
		{"forwarded before ttl check", []string{"X-Forwarded-For", "10.0.0.1"},
			http.StatusForbidden},
		{"other forwarding header allowed", []string{ttlName, "60", "Via", "1.1 p"},
			http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodPut, "/latest/api/token", tt.headers...)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d (body %q)", r.status, tt.want, r.body)
			}
			if tt.want != http.StatusOK {
				if ct := r.header.Get("Content-Type"); ct != "text/html" {
					t.Errorf("error Content-Type %q, want text/html", ct)
				}
				return
			}
			if !regexp.MustCompile(`^[A-Za-z0-9_-]{40,}$`).MatchString(r.body) {
				t.Errorf("token %q is not URL-safe random text of 40+ chars", r.body)
			}
		})
	}
}

func TestTokensAreDistinct(t *testing.T) {
	e := start(t, simulator.Options{})
	seen := map[string]bool{}
	for range 20 {
		tok := e.token("60")
		if seen[tok] {
			t.Fatalf("token %q issued twice", tok)
		}
		seen[tok] = true
	}
}

func TestMethods(t *testing.T) {
	e := start(t, simulator.Options{})
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{http.MethodGet, "/latest/api/token", http.StatusMethodNotAllowed, "PUT"},
		{http.MethodPost, "/latest/api/token", http.StatusMethodNotAllowed, "PUT"},
		{http.MethodDelete, "/latest/api/token", http.StatusMethodNotAllowed, "PUT"},
		{http.MethodPost, md + "instance-id", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodPut, md + "instance-id", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, md, http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodOptions, "/latest/user-data", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodHead, md + "instance-id", http.StatusOK, ""},
		{http.MethodPut, "/latest/api/token?", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(tt.method, tt.path, ttlName, "60")
			if r.status != tt.want || r.header.Get("Allow") != tt.allow {
				t.Errorf("got %d Allow %q, want %d Allow %q",
					r.status, r.header.Get("Allow"), tt.want, tt.allow)
			}
		})
	}
}

func TestHeadHasLengthNoBody(t *testing.T) {
	e := start(t, simulator.Options{})
	r := e.do(http.MethodHead, md+"instance-id")
	want, _ := e.sim.Value(md + "instance-id")
	if r.body != "" || r.header.Get("Content-Length") != strconv.Itoa(len(want)) {
		t.Errorf("HEAD: body %q Content-Length %q, want none and %d",
			r.body, r.header.Get("Content-Length"), len(want))
	}
}

// TestTokenTimeline follows one server through time and mode switches;
// send says which token header the step sends: "tok" for the current
// token, "-" for none, anything else as is.
func TestTokenTimeline(t *testing.T) {
	e := start(t, simulator.Options{})
	tok := e.token("60")
	steps := []struct {
		name    string
		advance time.Duration
		do      func()
		send    []string
		want    int
	}{
		{"fresh token", 0, nil, []string{"tok"}, http.StatusOK},
		{"tokenless allowed", 0, nil, nil, http.StatusOK},
		{"unknown token", 0, nil, []string{"aaa"}, http.StatusUnauthorized},
		{"empty token", 0, nil, []string{""}, http.StatusUnauthorized},
		{"two tokens", 0, nil, []string{"tok", "tok"}, http.StatusUnauthorized},
		{"at +59s", 59 * time.Second, nil, []string{"tok"}, http.StatusOK},
		{"expired at +60s", time.Second, nil, []string{"tok"}, http.StatusUnauthorized},
		{"hardened tokenless", 0, func() { e.sim.SetHardenedOnly(true) }, nil,
			http.StatusUnauthorized},
		{"hardened new token", 0, func() { tok = e.token("21600") }, []string{"tok"},
			http.StatusOK},
		{"revoked", 0, e.sim.RevokeTokens, []string{"tok"}, http.StatusUnauthorized},
		{"hardened off", 0, func() { e.sim.SetHardenedOnly(false) }, nil, http.StatusOK},
	}
	unauthorized := 0
	for _, st := range steps {
		e.clock.Advance(st.advance)
		if st.do != nil {
			st.do()
		}
		var headers []string
		for _, v := range st.send {
			if v == "tok" {
				v = tok
			}
			headers = append(headers, tokenName, v)
		}
		if st.want == http.StatusUnauthorized {
			unauthorized++
		}
		if r := e.get(md+"instance-id", headers...); r.status != st.want {
			t.Errorf("%s: status %d, want %d", st.name, r.status, st.want)
		}
	}
	if got := e.sim.Stats().Unauthorized; got != unauthorized {
		t.Errorf("Stats.Unauthorized = %d, want %d", got, unauthorized)
	}
}

func TestHardenedOnlyOption(t *testing.T) {
	e := start(t, simulator.Options{HardenedOnly: true})
	if r := e.get(md + "instance-id"); r.status != http.StatusUnauthorized {
		t.Errorf("tokenless: status %d, want 401", r.status)
	}
	tok := e.token("10")
	if r := e.get(md+"instance-id", tokenName, tok); r.status != http.StatusOK {
		t.Errorf("with token: status %d, want 200", r.status)
	}
}
