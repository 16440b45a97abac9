package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// rawRequest writes a raw HTTP/1.1 request to the agent and returns the
// response.
func (r *rig) rawRequest(t *testing.T, raw string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", r.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	return res
}

func TestRequestShapes(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	id, _ := r.sim.Value("/latest/meta-data/instance-id")
	tests := []struct {
		name   string
		raw    string
		status int
		body   string
	}{
		{"origin form", get("/latest/meta-data/instance-id"),
			200, string(id)},
		{"absolute form for the metadata host",
			"GET http://100.100.100.200/latest/meta-data/instance-id HTTP/1.1\r\n" +
				"Host: 100.100.100.200\r\n\r\n", 200, string(id)},
		{"absolute form with port 80",
			"GET http://100.100.100.200:80/latest/meta-data/instance-id HTTP/1.1\r\n" +
				"Host: 100.100.100.200\r\n\r\n", 200, string(id)},
		{"absolute form for another host",
			"GET http://example.com/latest/meta-data/instance-id HTTP/1.1\r\n" +
				"Host: example.com\r\n\r\n", 403, "only http://100.100.100.200"},
		{"https absolute form", "GET https://100.100.100.200/latest/meta-data/ HTTP/1.1\r\n" +
			"Host: 100.100.100.200\r\n\r\n", 403, ""},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			405, "CONNECT"},
		{"trailing question mark", get("/latest/meta-data/instance-id?"),
			200, string(id)},
		{"POST on a metadata path", "POST /latest/meta-data/instance-id HTTP/1.1\r\n" +
			"Host: 100.100.100.200\r\nContent-Length: 0\r\n\r\n", 405, ""},
		{"GET with a body", "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 100.100.100.200\r\n" +
			"Content-Length: 3\r\n\r\nabc", 400, ""},
		{"dot segment", get("/latest/meta-data/./instance-id"),
			400, "canonical"},
		{"dot dot segment", get("/latest/meta-data/ram/../instance-id"),
			400, ""},
		{"double slash", get("/latest/meta-data//instance-id"),
			400, ""},
		{"encoded slash", "GET /latest/meta-data/ram%2Fsecurity-credentials/ HTTP/1.1\r\n" +
			"Host: 100.100.100.200\r\n\r\n", 400, ""},
		{"encoded dot dot", "GET /latest/meta-data/ram/%2e%2e/instance-id HTTP/1.1\r\n" +
			"Host: 100.100.100.200\r\n\r\n", 400, ""},
		{"backslash", get("/latest/meta-data\\instance-id"), 400, ""},
		{"encoded NUL", get("/latest/meta-data/instance-id%00"),
			400, ""},
		{"not a metadata root", get("/admin/metrics"), 404, ""},
		{"token path with GET", get("/latest/api/token"), 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := r.rawRequest(t, tt.raw)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d", res.StatusCode, body, tt.status)
			}
			mustContain(t, "body", string(body), tt.body)
		})
	}
}

func TestNoRedirectsAndListingsPassThrough(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	for _, path := range []string{"/latest/meta-data", "/latest/meta-data/", "/latest",
		"/latest/meta-data/network/interfaces/macs/", "/latest/meta-data/ram/security-credentials/"} {
		want, ok := r.sim.Value(path)
		if !ok {
			t.Fatalf("simulator has no value for %s", path)
		}
		status, body := r.get(t, path)
		if status != 200 || body != string(want) {
			t.Errorf("GET %s = %d %q, want 200 %q", path, status, body, want)
		}
	}
}

func TestBodiesAndContentTypeByteExact(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	for _, path := range []string{"/latest/user-data", "/latest/meta-data/dns-conf/nameservers",
		"/latest/dynamic/instance-identity/document", "/latest/meta-data/nosuch"} {
		direct, err := http.Get(r.sim.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(direct.Body)
		direct.Body.Close()
		for round := 0; round < 2; round++ { // a miss, then a hit
			res, err := r.srv.Client().Get(r.srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != direct.StatusCode || string(got) != string(want) ||
				res.Header.Get("Content-Type") != direct.Header.Get("Content-Type") {
				t.Errorf("%s round %d: %d %q %q, want %d %q %q", path, round, res.StatusCode,
					res.Header.Get("Content-Type"), got, direct.StatusCode,
					direct.Header.Get("Content-Type"), want)
			}
		}
	}
}

func TestHeadHasNoBody(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	res, err := r.srv.Client().Head(r.srv.URL + "/latest/meta-data/instance-id")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || len(body) != 0 || res.ContentLength <= 0 {
		t.Errorf("HEAD: %d, %d body bytes, Content-Length %d", res.StatusCode, len(body),
			res.ContentLength)
	}
}

func TestQueryIsPartOfTheKey(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const p = "/latest/dynamic/instance-identity/pkcs7"
	_, a := r.get(t, p+"?audience=a")
	_, b := r.get(t, p+"?audience=b")
	_, a2 := r.get(t, p+"?audience=a")
	if a == b || a != a2 {
		t.Errorf("audience a %q, b %q, a again %q: want a != b and a stable", a, b, a2)
	}
	if n := r.upstreamGets(p); n != 2 {
		t.Errorf("upstream saw %d GETs of %s, want 2", n, p)
	}
}

func TestConsumerTokens(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const ttlH = "X-aliyun-ecs-metadata-token-ttl-seconds"
	tests := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"valid", []string{ttlH, "21600"}, 200},
		{"minimum", []string{ttlH, "1"}, 200},
		{"missing", nil, 400},
		{"zero", []string{ttlH, "0"}, 400},
		{"too large", []string{ttlH, "21601"}, 400},
		{"negative", []string{ttlH, "-5"}, 400},
		{"fractional", []string{ttlH, "1.5"}, 400},
		{"huge", []string{ttlH, "99999999999999999999"}, 400},
		{"repeated", []string{ttlH, "60", ttlH, "60"}, 400},
		{"not a number", []string{ttlH, "abc"}, 400},
		{"through a proxy", []string{ttlH, "60", "X-Forwarded-For", "10.0.0.1"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := r.do(t, http.MethodPut, "/latest/api/token", tt.hdr...)
			if status != tt.status {
				t.Errorf("PUT: %d %q, want %d", status, body, tt.status)
			}
		})
	}
	if n := r.sim.Stats().TokenPUTs; n != 0 {
		t.Errorf("consumer PUTs made %d upstream token PUTs, want 0", n)
	}
}

func TestConsumerTokenChecks(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.RequireToken = true })
	const path = "/latest/meta-data/instance-id"
	_, tok := r.do(t, http.MethodPut, "/latest/api/token",
		"X-aliyun-ecs-metadata-token-ttl-seconds", "60")
	steps := []struct {
		name    string
		advance int // seconds
		hdr     []string
		status  int
	}{
		{"no token when required", 0, nil, 401},
		{"unknown token", 0, []string{"X-aliyun-ecs-metadata-token", "nope"}, 401},
		{"issued token", 0, []string{"X-aliyun-ecs-metadata-token", tok}, 200},
		{"still valid at +59s", 59, []string{"X-aliyun-ecs-metadata-token", tok}, 200},
		{"expired at +60s", 1, []string{"X-aliyun-ecs-metadata-token", tok}, 401},
	}
	for _, s := range steps {
		r.clk.Advance(secs(s.advance))
		if status, body := r.get(t, path, s.hdr...); status != s.status {
			t.Errorf("%s: %d %q, want %d", s.name, status, body, s.status)
		}
	}
}

func TestThousandTokenPUTsStayLocal(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.ConsumerRate = 0 })
	r.get(t, "/latest/meta-data/instance-id")
	before := r.sim.Stats()
	errs := make(chan error, 1000)
	for i := 0; i < 1000; i++ {
		go func() {
			req, _ := http.NewRequest(http.MethodPut, r.srv.URL+"/latest/api/token", nil)
			req.Header.Set("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
			req.Header.Set("Via", "1.1 some-proxy")
			res, err := r.srv.Client().Do(req)
			if err == nil {
				res.Body.Close()
				if res.StatusCode != 200 {
					err = fmt.Errorf("status %d", res.StatusCode)
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < 1000; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	after := r.sim.Stats()
	if total(after.Requests) != total(before.Requests) {
		t.Errorf("consumer PUTs made %d upstream requests, want 0",
			total(after.Requests)-total(before.Requests))
	}
	if after.TokenPUTs != 1 || after.Forwarded != 0 {
		t.Errorf("upstream saw %d token PUTs and %d forwarded requests, want 1 and 0",
			after.TokenPUTs, after.Forwarded)
	}
}

func TestConsumerHeadersNeverReachUpstream(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	status, _ := r.get(t, "/latest/meta-data/region-id", "X-Forwarded-For", "10.1.1.1",
		"Forwarded", "for=10.1.1.1", "X-Real-IP", "10.1.1.1", "Via", "1.1 p",
		"X-aliyun-ecs-metadata-token", "consumer-token")
	if status != 401 {
		t.Fatalf("GET with an unknown consumer token: %d, want 401", status)
	}
	status, _ = r.get(t, "/latest/meta-data/region-id", "X-Forwarded-For", "10.1.1.1",
		"Forwarded", "for=10.1.1.1", "X-Real-IP", "10.1.1.1", "Via", "1.1 p")
	st := r.sim.Stats()
	if status != 200 || st.Forwarded != 0 || st.Tokenless != 0 {
		t.Errorf("status %d; upstream saw %d forwarded and %d tokenless requests, want 0, 0",
			status, st.Forwarded, st.Tokenless)
	}
}

func total(m map[string]int) int {
	n := 0
	for k, v := range m {
		if !strings.HasPrefix(k, "PUT ") {
			n += v
		}
	}
	return n
}

// TestLoopIsDetected points an agent's upstream at another agent that
// points back at it, as interception without the exemption would: the
// request ends with 508 instead of circling.
func TestLoopIsDetected(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	w := serveOne(agentFor(t, r.srv.URL, nil), "/latest/meta-data/instance-id")
	if w.Code != http.StatusLoopDetected && w.Code != http.StatusBadGateway {
		t.Errorf("agent behind an agent: %d, want 508 or 502", w.Code)
	}
	if n := total(r.sim.Stats().Requests); n != 0 {
		t.Errorf("the looped request reached the simulator %d times", n)
	}
}

// TestHitPathDoesNotAllocate keeps the agent's own work on a cache hit
// free of heap allocations, over TCP as a real server's connection sees
// it (consumer recorded, Host an address) and in proxy form.
func TestHitPathDoesNotAllocate(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const path = "/latest/meta-data/instance-id"
	r.get(t, path)
	tcp := &Consumer{id: "127.0.0.1"}
	for _, target := range []string{path, "http://" + MetadataHost + path} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "127.0.0.1:8998"
		req = req.WithContext(context.WithValue(req.Context(), consumerKey{}, tcp))
		w := newBenchWriter()
		allocs := testing.AllocsPerRun(200, func() {
			w.reset()
			r.agent.ServeHTTP(w, req)
		})
		if w.status != 200 || allocs != 0 {
			t.Errorf("%s: status %d, %v allocations per hit, want 200 and 0", target, w.status,
				allocs)
		}
	}
}
