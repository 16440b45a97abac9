package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// The tests in this file send hostile bytes over real connections to the
// http.Server that Run builds (newServer), not to httptest's defaults, so
// that net/http's own limits are part of what is proven.

// liveServer is an agent behind the http.Server Run builds, on a loopback
// port under a connection limit.
type liveServer struct {
	addr  string
	limit *connLimit
}

// serveLikeRun serves a as Run does; edit may change the server's bounds,
// such as a shorter ReadHeaderTimeout, before it starts.
func serveLikeRun(t *testing.T, a *Agent, maxConns int, edit func(*http.Server)) *liveServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limit := newConnLimit(maxConns)
	srv := a.newServer(a)
	if edit != nil {
		edit(srv)
	}
	var conns sync.WaitGroup // so that no handed-off connection outlives the test
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			conns.Done()
		}
	}
	lean := newLeanServer(a, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = lean.serve(limit.wrap(ln))
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // close at once, as the old http.Server.Close did
		_ = lean.shutdown(ctx)
		<-done
		conns.Wait()
	})
	return &liveServer{addr: ln.Addr().String(), limit: limit}
}

// rawConn is one client connection that writes bytes as given.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, network, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(raw string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, raw); err != nil {
		rc.t.Fatalf("writing the request: %v", err)
	}
}

// answer reads one response to a request of method within wait.
func (rc *rawConn) answer(method string, wait time.Duration) (*http.Response, string, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	res, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res, string(body), err
}

// closedByPeer reports whether the server closed the connection within
// wait; it fails the test if the server sent anything instead.
func (rc *rawConn) closedByPeer(wait time.Duration) bool {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	b, err := rc.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := rc.br.Peek(rc.br.Buffered())
		rc.t.Fatalf("server sent %q where nothing was due", string(b)+string(rest))
	case isTimeout(err):
		return false
	}
	return true // EOF or reset
}

// cutOff reports whether the server closed the connection within wait,
// after at most a 400 answer to the part of a request it had read.
func (rc *rawConn) cutOff(wait time.Duration) bool {
	rc.t.Helper()
	res, body, err := rc.answer(http.MethodGet, wait)
	switch {
	case isTimeout(err):
		return false
	case err != nil:
		return true
	case res.StatusCode != 400:
		rc.t.Fatalf("server answered %d %q to a partial request, want at most a 400",
			res.StatusCode, body)
	}
	return rc.closedByPeer(wait)
}

// hostileCase is raw bytes and the answers allowed for them.
type hostileCase struct {
	name   string
	raw    string
	status []int // any of these
	body   string
}

func get(path string, hdr ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: 100.100.100.200\r\n" + strings.Join(hdr, "") + "\r\n"
}

const credsListing = "/latest/meta-data/ram/security-credentials/"

func tokenPUT(hdr ...string) string {
	return "PUT /latest/api/token HTTP/1.1\r\nHost: 100.100.100.200\r\n" +
		strings.Join(hdr, "") + "\r\n"
}

func hdr(name, value string) string { return name + ": " + value + "\r\n" }

// smuggled is a request hidden in another's body: it asks for the
// credentials, so that an answer to it shows up in the follow-up check.
const smuggled = "GET " + credsPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

var hostileCases = []hostileCase{
	// Sizes: net/http bounds the request line and headers together.
	{"URL of 64 KiB", get("/latest/meta-data/" + strings.Repeat("a", 64<<10)), []int{431}, ""},
	{"header of 32 KiB", get("/latest/meta-data/instance-id", hdr("X-Pad",
		strings.Repeat("p", 32<<10))), []int{431}, ""},
	{"2,000 small headers", get("/latest/meta-data/instance-id",
		strings.Repeat(hdr("X-P", "0123456789"), 2000)), []int{431}, ""},
	{"token header of 20 KiB", get("/latest/meta-data/instance-id", hdr(
		"X-aliyun-ecs-metadata-token", strings.Repeat("t", 20<<10))), []int{431}, ""},
	{"header of 8 KiB is still served", get("/latest/meta-data/instance-id",
		hdr("X-Pad", strings.Repeat("p", 8<<10))), []int{200}, ""},

	// Smuggling shapes.
	{"Content-Length and Transfer-Encoding",
		"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}, "no body"},
	{"Content-Length and Transfer-Encoding on the token path",
		tokenPUT(hdr(ttlName, "60"), hdr("Content-Length", "5"),
			hdr("Transfer-Encoding", "chunked")) + "0\r\n\r\n" + smuggled, []int{400}, "no body"},
	{"two different Content-Lengths",
		"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n" +
			"Content-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled, []int{400}, ""},
	{"two equal Content-Lengths with a body",
		"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n" +
			"Content-Length: 4\r\n\r\nbody", []int{400}, "no body"},
	{"signed Content-Length", get("/latest/meta-data/instance-id", hdr("Content-Length", "+0")),
		[]int{400}, ""},
	{"Transfer-Encoding other than chunked", get("/latest/meta-data/instance-id",
		hdr("Transfer-Encoding", "gzip, chunked")), []int{501}, ""},
	{"Transfer-Encoding twice", get("/latest/meta-data/instance-id",
		hdr("Transfer-Encoding", "chunked"), hdr("Transfer-Encoding", "chunked")), []int{501}, ""},
	// RFC 9112 lets a server join a folded line to the header before it,
	// as net/http does: the Content-Length below is part of X-A's value.
	{"header folded onto two lines", get("/latest/meta-data/instance-id",
		"X-A: 1\r\n Content-Length: 5\r\n"), []int{200}, ""},
	{"space before the colon", get("/latest/meta-data/instance-id",
		"Content-Length : 5\r\n"), []int{400}, ""},

	// Bodies on reads.
	{"GET with a body", get("/latest/meta-data/instance-id", hdr("Content-Length", "3")) + "abc",
		[]int{400}, "no body"},
	{"GET with a chunked body", get("/latest/meta-data/instance-id",
		hdr("Transfer-Encoding", "chunked")) + "3\r\nabc\r\n0\r\n\r\n", []int{400}, "no body"},
	{"HEAD with a body", "HEAD /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
		"Content-Length: 3\r\n\r\nabc", []int{400}, ""},
	{"token PUT with a body", tokenPUT(hdr(ttlName, "60"),
		hdr("Content-Length", "3")) + "abc", []int{400}, "no body"},

	// Methods and targets.
	{"POST", "POST /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", []int{405}, ""},
	{"DELETE", "DELETE /latest/meta-data/instance-id HTTP/1.1" +
		"\r\nHost: 127.0.0.1\r\n\r\n", []int{405}, ""},
	{"PUT on a metadata path", "PUT /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{405}, ""},
	{"TRACE", "TRACE /latest/meta-data/instance-id HTTP/1.1" +
		"\r\nHost: 127.0.0.1\r\n\r\n", []int{405}, ""},
	{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", []int{405}, ""},
	{"lower-case get", "get /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{405}, ""},
	{"CONNECT to the metadata host", "CONNECT 100.100.100.200:80 HTTP/1.1\r\n" +
		"Host: 100.100.100.200:80\r\n\r\n", []int{405}, "CONNECT"},
	{"CONNECT with a path", "CONNECT /latest/meta-data/instance-id HTTP/1.1" +
		"\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{405}, "CONNECT"},
	{"absolute form for another host", "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1" +
		"\r\nHost: 169.254.169.254\r\n\r\n", []int{403}, "only http://100.100.100.200"},
	{"absolute form with the host as user info", "GET http://100.100.100.200@example.com" +
		"/latest/meta-data/ HTTP/1.1\r\nHost: example.com\r\n\r\n", []int{403}, ""},
	{"absolute form on another port", "GET http://100.100.100.200:8080/latest/meta-data/ " +
		"HTTP/1.1\r\nHost: 100.100.100.200:8080\r\n\r\n", []int{403}, ""},
	{"absolute form for a look-alike host", "GET http://100.100.100.200.example.com" +
		"/latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", []int{403}, ""},

	// Token TTLs and tokens.
	{"TTL negative", tokenPUT(hdr(ttlName, "-60")), []int{400}, "whole number"},
	{"TTL huge", tokenPUT(hdr(ttlName, "99999999999999999999999")), []int{400}, ""},
	{"TTL fractional", tokenPUT(hdr(ttlName, "60.5")), []int{400}, ""},
	{"TTL in exponent form", tokenPUT(hdr(ttlName, "6e1")), []int{400}, ""},
	{"TTL in hex", tokenPUT(hdr(ttlName, "0x3c")), []int{400}, ""},
	{"TTL with a plus sign", tokenPUT(hdr(ttlName, "+60")), []int{400}, ""},
	{"TTL repeated", tokenPUT(hdr(ttlName, "60"), hdr(ttlName, "60")), []int{400}, ""},
	{"TTL as a list", tokenPUT(hdr(ttlName, "60, 60")), []int{400}, ""},
	{"TTL in Arabic-Indic digits", tokenPUT(hdr(ttlName, "\u0666\u0660")), []int{400}, ""},
	{"TTL empty", tokenPUT(hdr(ttlName, "")), []int{400}, ""},
	{"TTL with a NUL", tokenPUT(hdr(ttlName, "6\x000")), []int{400}, ""},
	{"token with a control character", get("/latest/meta-data/instance-id",
		hdr(tokenName, "abc\x01def")), []int{400}, ""},
	{"token with DEL", get("/latest/meta-data/instance-id", hdr(tokenName, "abc\x7f")),
		[]int{400}, ""},
	{"token with a tab", get("/latest/meta-data/instance-id", hdr(tokenName, "abc\tdef")),
		[]int{401}, "token"},
	{"token with invalid UTF-8", get("/latest/meta-data/instance-id", hdr(tokenName, "\xff\xfe")),
		[]int{401}, "token"},
	{"token sent twice", get("/latest/meta-data/instance-id", hdr(tokenName, "a"),
		hdr(tokenName, "a")), []int{401}, ""},

	// Bytes in paths.
	{"CR in the path", "GET /latest/meta-data/instance-id\rX HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{400}, ""},
	{"encoded CR LF in the path", get("/latest/meta-data/instance-id%0d%0aX-Injected:%201"),
		[]int{400}, "canonical"},
	{"encoded CR LF in the query", get("/latest/meta-data/instance-id?a=%0d%0aX:%201"),
		[]int{200}, ""},
	{"raw NUL in the path", "GET /latest/meta-data/instance-id\x00 HTTP/1.1" +
		"\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{400}, ""},
	{"encoded NUL in the path", get("/latest/meta-data/instance-id%00"), []int{400}, ""},
	{"invalid UTF-8 in the path", get("/latest/meta-data/\xff\xfe"), []int{400}, "canonical"},
	{"encoded invalid UTF-8 in the path", get("/latest/meta-data/%ff%fe"), []int{400}, ""},
	{"bad escape in the path", get("/latest/meta-data/%zz"), []int{400}, ""},
	{"invalid UTF-8 in the query", get("/latest/meta-data/instance-id?a=\xff"), []int{400}, ""},
	{"space in the query", "GET /latest/meta-data/instance-id?a b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{400}, ""},

	// Versions and Host.
	{"HTTP/1.0 without Host", "GET /latest/meta-data/instance-id HTTP/1.0\r\n\r\n",
		[]int{400}, "Host"},
	{"HTTP/1.0 with Host", "GET /latest/meta-data/instance-id HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{200}, ""},
	{"HTTP/1.1 without Host", "GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n",
		[]int{400}, ""},
	{"HTTP/1.1 with an empty Host", "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost:\r\n\r\n",
		[]int{200}, ""},
	{"two Hosts", "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		[]int{400}, ""},
	// RFC 9112 lets a recipient take a bare LF for a line end, as net/http
	// does; no proxy sits in front of the agent to read it otherwise.
	{"a DNS name as Host (rebinding)", "GET /latest/meta-data/instance-id HTTP/1.1\r\n" +
		"Host: attacker.example:8998\r\n\r\n", []int{403}, "rebinding"},
	{"localhost as Host", "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: localhost:8998\r\n\r\n",
		[]int{200}, ""},
	{"an IPv6 literal as Host", "GET /latest/meta-data/instance-id HTTP/1.1" +
		"\r\nHost: [::1]:8998\r\n\r\n",
		[]int{200}, ""},
	{"bare LF line ends", "GET /latest/meta-data/instance-id HTTP/1.1\nHost: 127.0.0.1\n\n",
		[]int{200}, ""},
	{"Expect 100-continue on a read", get("/latest/meta-data/instance-id",
		hdr("Expect", "100-continue"), hdr("Content-Length", "5")), []int{400}, "no body"},
	{"HTTP/0.9 request line", "GET /latest/meta-data/instance-id\r\n\r\n", []int{400}, ""},
	{"HTTP/2.0 request line", "GET /latest/meta-data/instance-id HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
		[]int{505}, ""},
}

var (
	ttlName   = http.CanonicalHeaderKey(tokenTTLHeader)
	tokenName = http.CanonicalHeaderKey(tokenHeader)
)

// TestHostileRequests sends each shape on its own connection and checks
// the answer, that the answer leaks nothing, and that the connection
// stays in step: either it is closed, or the next request on it gets its
// own answer (a smuggled request is never answered).
func TestHostileRequests(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	live := serveLikeRun(t, r.agent, 64, nil)
	region, _ := r.sim.Value("/latest/meta-data/region-id")
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, "tcp", live.addr)
			rc.send(tc.raw)
			res, body, err := rc.answer(strings.Fields(tc.raw)[0], 5*time.Second)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			checkHostileAnswer(t, tc, res, body)
			if res.Close {
				if !rc.closedByPeer(5 * time.Second) {
					t.Error("answer said Connection: close, but the connection stayed open")
				}
				return
			}
			rc.send(get("/latest/meta-data/region-id"))
			res, body, err = rc.answer(http.MethodGet, 5*time.Second)
			if err != nil || res.StatusCode != 200 || body != string(region) {
				t.Errorf("next request on the connection: %v %q, want 200 %q", err, body, region)
			}
		})
	}
	if n := r.upstreamGets(credsPath); n != 0 {
		t.Errorf("hostile requests made %d upstream reads of the credentials", n)
	}
}

func checkHostileAnswer(t *testing.T, tc hostileCase, res *http.Response, body string) {
	t.Helper()
	ok := false
	for _, s := range tc.status {
		ok = ok || res.StatusCode == s
	}
	if !ok {
		t.Fatalf("status %d %q, want one of %v", res.StatusCode, body, tc.status)
	}
	mustContain(t, "body", body, tc.body)
	if res.StatusCode < 400 {
		return
	}
	if len(body) > 200 || strings.Contains(body, "AccessKey") {
		t.Errorf("error body of %d bytes: %q, want a short text that quotes nothing", len(body), body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("error Content-Type %q, want text/plain", ct)
	}
}

// TestSlowClientsAreCut: a client that stops halfway through its request
// loses its connection once ReadHeaderTimeout passes, and one that
// announces a body it never sends is answered at once and cut.
func TestSlowClientsAreCut(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	live := serveLikeRun(t, r.agent, 64, func(s *http.Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
	})
	for _, tc := range []struct{ name, raw string }{
		{"sends nothing", ""},
		{"half a request line", "GET /latest/meta-"},
		{"half the headers", "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, "tcp", live.addr)
			rc.send(tc.raw)
			if !rc.cutOff(5 * time.Second) {
				t.Error("connection still open after 5s, want it closed after 100ms")
			}
		})
	}
	for _, tc := range []struct{ name, raw string }{
		{"read", get("/latest/meta-data/instance-id", hdr("Content-Length", "100")) + "ab"},
		{"token", tokenPUT(hdr(ttlName, "60"), hdr("Content-Length", "100")) + "ab"},
		{"chunked read", get("/latest/meta-data/instance-id",
			hdr("Transfer-Encoding", "chunked")) + "64\r\nab"},
	} {
		t.Run("body that never comes, "+tc.name, func(t *testing.T) {
			rc := dialRaw(t, "tcp", live.addr)
			rc.send(tc.raw)
			res, body, err := rc.answer(strings.Fields(tc.raw)[0], 5*time.Second)
			if err != nil || res.StatusCode != 400 || !res.Close {
				t.Fatalf("answer %v %q, want 400 and Connection: close at once", err, body)
			}
			if !rc.closedByPeer(5 * time.Second) {
				t.Error("connection still open, want it closed")
			}
		})
	}
}

// TestIdleConnectionsAreBounded holds the server's connection bound with
// idle keep-alive connections: one more waits unserved until one of them
// closes, and is then served.
func TestIdleConnectionsAreBounded(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const bound = 8
	live := serveLikeRun(t, r.agent, bound, nil)
	id, _ := r.sim.Value("/latest/meta-data/instance-id")
	idle := make([]*rawConn, bound)
	for i := range idle {
		idle[i] = dialRaw(t, "tcp", live.addr)
		idle[i].send(get("/latest/meta-data/instance-id"))
		if res, _, err := idle[i].answer(http.MethodGet, 5*time.Second); err != nil ||
			res.StatusCode != 200 {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if n := live.limit.open(); n != bound {
		t.Fatalf("%d connections hold a slot, want %d", n, bound)
	}
	extra := dialRaw(t, "tcp", live.addr)
	extra.send(get("/latest/meta-data/instance-id"))
	if res, _, err := extra.answer(http.MethodGet, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a connection past the bound was served: %v %v", res, err)
	}
	_ = idle[0].c.Close()
	res, body, err := extra.answer(http.MethodGet, 5*time.Second)
	if err != nil || res.StatusCode != 200 || body != string(id) {
		t.Fatalf("after a slot freed: %v %q, want 200 %q", err, body, id)
	}
	if n := live.limit.open(); n != bound {
		t.Errorf("%d connections hold a slot, want %d", n, bound)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestPolicyBypassShapes asks for the credentials in every other spelling
// we know of, under a policy that denies them to everyone: none is
// answered with them, and none reaches upstream.
func TestPolicyBypassShapes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy")
	const rule = "deny any /latest/meta-data/ram/security-credentials/\n"
	if err := os.WriteFile(file, []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, simulator.Options{}, func(c *Config) { c.PolicyFile = file })
	live := serveLikeRun(t, r.agent, 64, nil)
	const role = "EcsRamRoleDemo"
	for _, tc := range []hostileCase{
		{"plain", get(credsPath), []int{403}, "policy"},
		{"the role listing", get(credsListing), []int{403}, "policy"},
		{"the listing without its slash", get(strings.TrimSuffix(credsListing, "/")), []int{403}, ""},
		{"trailing question mark", get(credsPath + "?"), []int{403}, ""},
		{"a query", get(credsPath + "?a=b"), []int{403}, ""},
		{"trailing slash", get(credsPath + "/"), []int{403}, ""},
		{"Ram", get("/latest/meta-data/Ram/security-credentials/" + role), []int{403}, ""},
		{"upper case", get("/latest/meta-data/RAM/SECURITY-CREDENTIALS/" + role), []int{403}, ""},
		{"versioned root", get("/2016-01-01/meta-data/ram/security-credentials/" + role),
			[]int{403}, ""},
		{"another date root", get("/2099-12-31/meta-data/ram/security-credentials/"), []int{403}, ""},
		{"upper-case root", get("/LATEST/meta-data/ram/security-credentials/"), []int{404}, ""},
		{"absolute form", get("http://100.100.100.200" + credsPath), []int{403}, ""},
		{"encoded letter", get("/latest/meta-data/%72am/security-credentials/" + role), []int{403}, ""},
		{"dot and encoded slash", get("/latest/meta-data/./ram/..%2Fram/security-credentials/"),
			[]int{400}, "canonical"},
		{"dot segment", get("/latest/meta-data/ram/./security-credentials/"), []int{400}, ""},
		{"dot dot", get("/latest/meta-data/ram/../ram/security-credentials/"), []int{400}, ""},
		{"encoded dot dot", get("/latest/meta-data/ram/%2e%2e/ram/security-credentials/"),
			[]int{400}, ""},
		{"upper-case encoded dot dot", get("/latest/meta-data/x/%2E%2E/ram/security-credentials/"),
			[]int{400}, ""},
		{"double slash", get("/latest/meta-data/ram//security-credentials/"), []int{400}, ""},
		{"leading double slash", get("//latest/meta-data/ram/security-credentials/"), []int{400}, ""},
		{"backslashes", get(`/latest/meta-data/ram\security-credentials\` + role), []int{400}, ""},
		{"encoded backslash", get("/latest/meta-data/ram%5csecurity-credentials/"), []int{400}, ""},
		{"encoded slash", get("/latest/meta-data/ram%2fsecurity-credentials/"), []int{400}, ""},
		{"double-encoded slash", get("/latest/meta-data/ram%252fsecurity-credentials/"),
			[]int{400}, ""},
		{"dot at the end", get("/latest/meta-data/ram/security-credentials/."), []int{400}, ""},
		{"NUL after the role", get(credsPath + "%00"), []int{400}, ""},
		{"fragment", get(credsPath + "#x"), []int{400}, ""},
		{"path parameter", get("/latest/meta-data/ram;x/security-credentials/" + role),
			[]int{400}, ""},
		{"dot dot with a parameter",
			get("/latest/meta-data/instance-id/..;/ram/security-credentials/" + role), []int{400}, ""},
		{"tab in the path", get("/latest/meta-data/ram/security-credentials/%09"), []int{400}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, "tcp", live.addr)
			rc.send(tc.raw)
			res, body, err := rc.answer(http.MethodGet, 5*time.Second)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			checkHostileAnswer(t, tc, res, body)
		})
	}
	for k := range r.sim.Stats().Requests {
		if strings.Contains(strings.ToLower(k), "security-credentials") {
			t.Errorf("upstream saw %q", k)
		}
	}
}

// TestRunBoundsConnections runs the whole daemon with MaxConns 2 over a
// Unix socket and a TCP port: the bound is shared by both listeners, and
// the peer's credentials are still read through the bound's wrapper (a
// policy that denies this process's uid one path proves it).
func TestRunBoundsConnections(t *testing.T) {
	sim, err := simulator.Start("127.0.0.1:0", simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	rule := "deny uid:" + strconv.Itoa(os.Getuid()) + " /latest/meta-data/zone-id\n"
	if err := os.WriteFile(policy, []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "a.sock")
	cfg := Defaults()
	cfg.Upstream, cfg.AdminListen, cfg.PolicyFile, cfg.MaxConns = sim.URL(), "", policy, 2
	cfg.Listen = []string{"unix:" + sock, "127.0.0.1:0"}
	tcp := runInBackground(t, cfg)

	viaUnix := dialRaw(t, "unix", sock)
	if s := roundTrip(t, viaUnix, "/latest/meta-data/zone-id"); s != 403 {
		t.Errorf("zone-id over the Unix socket: %d, want 403 from the uid rule", s)
	}
	viaUnix.send("GET /latest/meta-data/region-id HTTP/1.1\r\nHost:\r\n\r\n")
	if res, _, err := viaUnix.answer(http.MethodGet, 5*time.Second); err != nil ||
		res.StatusCode != 200 {
		t.Errorf("HTTP/1.1 with an empty Host over the Unix socket: %v %v, want 200", res, err)
	}
	viaTCP := dialRaw(t, "tcp", tcp)
	if s := roundTrip(t, viaTCP, "/latest/meta-data/zone-id"); s != 200 {
		t.Errorf("zone-id over TCP: %d, want 200", s)
	}
	extra := dialRaw(t, "tcp", tcp)
	extra.send(get("/latest/meta-data/region-id"))
	if _, _, err := extra.answer(http.MethodGet, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a third connection was served under MaxConns 2: %v", err)
	}
	_ = viaUnix.c.Close()
	if res, _, err := extra.answer(http.MethodGet, 5*time.Second); err != nil ||
		res.StatusCode != 200 {
		t.Fatalf("third connection once the Unix one closed: %v", err)
	}
}

// runInBackground runs Run with cfg until the test ends and returns the
// address of its TCP consumer listener, read from its "listening" log.
func runInBackground(t *testing.T, cfg Config) string {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, cfg, zap.New(core)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		for _, e := range logs.FilterMessage("listening").All() {
			if f := e.ContextMap(); f["network"] == "tcp" {
				return f["address"].(string)
			}
		}
		time.Sleep(5 * time.Millisecond) // polls a goroutine's progress, not a clock
	}
	t.Fatalf("Run logged no TCP listener within 5s: %v", logs.All())
	return ""
}

// roundTrip GETs path on rc and returns the status.
func roundTrip(t *testing.T, rc *rawConn, path string) int {
	t.Helper()
	rc.send(get(path))
	res, _, err := rc.answer(http.MethodGet, 5*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return res.StatusCode
}
