package agent

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// Run each target briefly with, for example:
//
//	go test -run '^$' -fuzz '^FuzzPathPolicy$' -fuzztime 100000x ./agent
//	go test -run '^$' -fuzz '^FuzzParseTTL$' -fuzztime 100000x ./agent
//	go test -run '^$' -fuzz '^FuzzHandler$' -fuzztime 60000x ./agent
//
// (counts, not durations: see test/run on Go 1.26's fuzz deadline race)
//
// Without -fuzz, go test runs the seeds below and testdata/fuzz/.

// pathSeeds are request targets in the spellings that have mattered.
var pathSeeds = []string{
	"/latest/meta-data/instance-id",
	"/latest/meta-data/ram/security-credentials/EcsRamRoleDemo",
	"/latest/meta-data/Ram/security-credentials/EcsRamRoleDemo",
	"/latest/meta-data/./ram/..%2Fram/security-credentials/",
	"/latest/meta-data/ram/%2e%2e/ram/security-credentials/",
	"/latest/meta-data/ram\\security-credentials\\EcsRamRoleDemo",
	"/latest/meta-data//ram/security-credentials/",
	"/latest/meta-data/instance-id/..;/ram/security-credentials/",
	"/latest/meta-data/%72am/security-credentials",
	"/2016-01-01/meta-data/ram/security-credentials/EcsRamRoleDemo",
	"/2016-01-01/meta-data/all",
	"/latest/user-data",
	"/latest/user-data/",
	"/latest/dynamic/instance-identity/pkcs7?audience=" + sentinelAudience,
	"/latest/meta-data/instance-id?",
	"/latest/meta-data/%00",
	"/latest/meta-data/%ff",
	"/",
	"/latest",
	"*",
}

// fuzzPolicy denies the credentials and user-data to everyone.
const fuzzPolicy = "deny any /latest/meta-data/ram/security-credentials/\n" +
	"deny any /latest/user-data\n"

// FuzzPathPolicy checks path cleaning and the policy together: a path
// checkPath accepts has one spelling, and the policy never allows a path
// that a lenient server could read as a denied one (decoding it again,
// taking backslashes for slashes, dropping ";" parameters, resolving dot
// segments, ignoring case, or reading a dated root as /latest/).
func FuzzPathPolicy(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s)
	}
	pol, err := ParsePolicy(strings.NewReader(fuzzPolicy))
	if err != nil {
		f.Fatal(err)
	}
	who := &Consumer{Addr: netip.MustParseAddr("127.0.0.1"), id: "127.0.0.1"}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target) // as net/http parses a request line
		if err != nil || checkPath(u.Path, u.RawPath) != nil {
			return
		}
		p := u.Path
		if !oneSpelling(p) {
			t.Fatalf("checkPath accepted %q (from %q), which is not in clean form", p, target)
		}
		allowed, line := pol.Allow(who, p)
		if denied := lenientlyDenied(target); allowed && denied {
			t.Fatalf("%q (path %q) allowed, but a lenient server reads it as a denied path", target, p)
		}
		if pp := policyPath(p); policyPath(pp) != pp {
			t.Fatalf("policyPath not idempotent on %q: %q then %q", p, pp, policyPath(pp))
		}
		if sw := swapCase(p); checkPath(sw, "") == nil {
			if a2, l2 := pol.Allow(who, sw); a2 != allowed || l2 != line {
				t.Fatalf("Allow(%q) = %v (line %d) but Allow(%q) = %v (line %d)",
					p, allowed, line, sw, a2, l2)
			}
		}
	})
}

// oneSpelling reports whether p is already what path.Clean makes of it,
// its trailing slash aside.
func oneSpelling(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// lenientlyDenied reads target as forgivingly as a server might and
// reports whether the result falls under fuzzPolicy's denials.
func lenientlyDenied(target string) bool {
	p, _, _ := strings.Cut(target, "?")
	for range 3 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	p = strings.ReplaceAll(p, `\`, "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	p = strings.ToLower(path.Clean("/" + strings.Join(segs, "/")))
	if first, rest, _ := strings.Cut(p[1:], "/"); first != "latest" {
		if _, err := time.Parse(time.DateOnly, first); err == nil {
			p = "/latest/" + rest
		}
	}
	return strings.HasPrefix(p+"/", "/latest/meta-data/ram/security-credentials/") ||
		strings.HasPrefix(p+"/", "/latest/user-data/")
}

func swapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// FuzzParseTTL checks the token TTL header against a plain reading of the
// rule: exactly one value, decimal digits only, from 1 to 21600. Any value
// it accepts means what it says; every canonical value in range is
// accepted.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"1", "60", "21600", "21601", "0", "-5", "1.5", "+60", " 60",
		"00060", "000060", "6e1", "0x3c", "99999999999999999999", "", "\u0666\u0660", "60\x00"} {
		f.Add(s, "", false)
	}
	f.Add("60", "60", true)
	f.Fuzz(func(t *testing.T, v1, v2 string, two bool) {
		values := []string{v1}
		if two {
			values = append(values, v2)
		}
		d, err := parseTTL(values)
		n, digits := decimal(v1)
		switch {
		case err == nil && (two || !digits || n < 1 || n > maxTokenTTL):
			t.Fatalf("parseTTL(%q) accepted %v", values, d)
		case err == nil && d != time.Duration(n)*time.Second:
			t.Fatalf("parseTTL(%q) = %v, want %ds", values, d, n)
		case err != nil && !two && digits && n >= 1 && n <= maxTokenTTL &&
			strconv.Itoa(n) == v1:
			t.Fatalf("parseTTL(%q) refused a canonical value in range: %v", values, err)
		case err != nil && err != errTTL:
			t.Fatalf("parseTTL(%q) = %v, want errTTL", values, err)
		}
	})
}

// decimal reads s as a run of ASCII digits; n is -1 when it overflows.
func decimal(s string) (n int, ok bool) {
	if s == "" {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n >= 0 && n < 1e9 {
			n = n*10 + int(c-'0')
		} else {
			n = -1
		}
	}
	return n, true
}

// fuzzRig is an agent in front of a sentinelUpstream, logging at Debug
// level, with the rate limits out of the way.
func newFuzzRig(f *testing.F) (*Agent, *lockedBuffer) {
	f.Helper()
	clk := fakeclock.New(t0)
	up := startSentinelUpstream(f, simulator.Options{Now: clk.Now})
	cfg := Defaults()
	cfg.Upstream = up.url
	cfg.ConsumerRate, cfg.UpstreamRate, cfg.UpstreamBurst = 0, 10000, 10000
	logs := &lockedBuffer{}
	a, err := New(cfg, Options{Logger: debugLogger(logs), Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	return a, logs
}

// FuzzHandler sends arbitrary requests, as net/http would parse them, to
// the whole handler in front of a healthy upstream. It never panics, never
// answers 2xx to a request that is not a canonical read or a token PUT,
// never fails with 5xx (upstream is healthy; 508 answers the agent's own
// hop header), never shows anyone the upstream token, shows the
// credentials only to a GET of their path, and logs no secret and no
// sentinel query value.
func FuzzHandler(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add("GET", s, "X-Pad", "1")
	}
	f.Add("PUT", tokenPath, ttlName, "60")
	f.Add("PUT", tokenPath, ttlName, "60.5")
	f.Add("GET", credsPath, tokenName, sentinelToken)
	f.Add("GET", "http://100.100.100.200"+credsPath, "Host", "example.com")
	f.Add("GET", "http://example.com"+credsPath, "X-Forwarded-For", "10.0.0.1")
	f.Add("CONNECT", "100.100.100.200:80", "X-A", "b")
	f.Add("HEAD", credsPath, "Content-Length", "3")
	f.Add("OPTIONS", "*", "X-A", "b")
	f.Add("GET", credsPath, loopHeader, "") // present but empty: still a loop
	a, logs := newFuzzRig(f)
	f.Fuzz(func(t *testing.T, method, target, name, value string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: 100.100.100.200\r\n" +
			name + ": " + value + "\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http answers these itself
		}
		r.RemoteAddr = "127.0.0.1:40000"
		logs.Reset()
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		checkFuzzAnswer(t, r, w)
		for _, s := range sentinels {
			if strings.Contains(logs.String(), s) {
				t.Fatalf("%q: a log line carries %s:\n%s", raw, s, logs)
			}
		}
	})
}

func checkFuzzAnswer(t *testing.T, r *http.Request, w *httptest.ResponseRecorder) {
	t.Helper()
	var text strings.Builder
	_ = w.Result().Header.Write(&text)
	text.Write(w.Body.Bytes())
	got := text.String()
	switch {
	case w.Code == http.StatusLoopDetected && r.Header[loopHeader] != nil:
	case w.Code >= 500:
		t.Fatalf("%s %s: %d %q with upstream healthy", r.Method, r.RequestURI, w.Code, got)
	case w.Code < 300 && !fuzzServable(r):
		t.Fatalf("%s %s answered %d: %q", r.Method, r.RequestURI, w.Code, got)
	case strings.Contains(got, sentinelToken):
		t.Fatalf("%s %s: the upstream token in the answer: %q", r.Method, r.RequestURI, got)
	}
	creds := strings.Contains(got, sentinelSecret) || strings.Contains(got, sentinelSTS)
	if creds && (w.Code != 200 || r.Method != http.MethodGet ||
		!credentialsRead.MatchString(strings.ToLower(r.URL.Path))) {
		t.Fatalf("%s %s answered %d with the credentials", r.Method, r.RequestURI, w.Code)
	}
}

// fuzzServable is an oracle written apart from the handler's checks: a
// token PUT, or a GET or HEAD of a clean, printable path on the metadata
// host, not a CONNECT.
func fuzzServable(r *http.Request) bool {
	if r.URL.Host != "" && strings.TrimSuffix(r.URL.Host, ":80") != MetadataHost {
		return false
	}
	if r.Method == http.MethodPut && r.URL.Path == tokenPath {
		return true
	}
	p := r.URL.Path
	if r.Method != http.MethodGet && r.Method != http.MethodHead ||
		!strings.HasPrefix(p, "/") || !oneSpelling(p) {
		return false
	}
	for _, c := range []byte(p) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`\;%?#`, c) >= 0 {
			return false
		}
	}
	lower := strings.ToLower(r.URL.RawPath)
	return !strings.Contains(lower, "%2f") && !strings.Contains(lower, "%5c")
}
