package agent

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// The lean path must be invisible but for speed: for any bytes a client
// sends, the agent's listeners (lean path in front, net/http behind) must
// answer exactly what net/http alone answers with the full handler.

// twinServers are one agent served twice: as Run serves it, and by a bare
// http.Server with the full handler, the reference.
type twinServers struct {
	network   string
	lean, ref string // addresses
}

// newTwinServers serves the twins on loopback TCP, or on Unix sockets in
// a temporary directory when network is "unix": fuzzing opens and closes
// hundreds of thousands of connections, which over TCP would leave every
// loopback port in TIME-WAIT.
func newTwinServers(t testing.TB, network string) *twinServers {
	t.Helper()
	clk := fakeclock.New(t0)
	sim, err := simulator.Start("127.0.0.1:0", simulator.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	cfg := Defaults()
	cfg.Upstream = sim.URL()
	cfg.ConsumerRate = 0 // answers must not depend on how fast tests send
	a, err := New(cfg, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	dir := t.TempDir()
	listen := func(name string) net.Listener {
		addr := "127.0.0.1:0"
		if network == "unix" {
			addr = filepath.Join(dir, name)
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	refLn, leanLn := listen("ref.sock"), listen("lean.sock")
	ref := a.newServer(a)
	go func() { _ = ref.Serve(refLn) }()
	t.Cleanup(func() { _ = ref.Close() })
	lean := newLeanServer(a, a.newServer(a))
	served := make(chan error, 1)
	go func() { served <- lean.serve(leanLn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = lean.shutdown(ctx)
		<-served
	})
	return &twinServers{network: network, lean: leanLn.Addr().String(),
		ref: refLn.Addr().String()}
}

// issuedToken matches the answer to a token PUT, whose token differs per
// request.
var issuedToken = regexp.MustCompile(`(Content-Length: 43\r\n(?:[^\r]*\r\n)*\r\n)[A-Za-z0-9_-]{43}`)

// sendAll sends raw on a new connection, half-closes it, and returns
// every byte the server sends until it closes, with the dates and the
// issued tokens masked.
func sendAll(t testing.TB, network, addr, raw string) string {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("reading the answers to %q: %v", raw, err)
	}
	s := dateHeader.ReplaceAllString(string(got), "Date: (masked)\r\n")
	return issuedToken.ReplaceAllString(s, "${1}(token)")
}

var dateHeader = regexp.MustCompile(`Date: [^\r]*\r\n`)

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// checkTwins fails the test when the two servers answer raw differently.
func checkTwins(t testing.TB, ts *twinServers, raw string) {
	t.Helper()
	lean := sendAll(t, ts.network, ts.lean, raw)
	ref := sendAll(t, ts.network, ts.ref, raw)
	if lean != ref {
		t.Errorf("request %q:\nlean path answered %q\nnet/http answered  %q", raw, lean, ref)
	}
}

// leanShapes are plain requests and near misses of the lean subset.
var leanShapes = []string{
	get("/latest/meta-data/instance-id"),
	"HEAD /latest/meta-data/instance-id HTTP/1.1\r\nHost: 100.100.100.200\r\n\r\n",
	get("/latest/meta-data/instance-id?"),
	get("/latest/meta-data/nothing-here"),
	get("/latest/meta-data/"),
	get("/latest/dynamic/instance-identity/pkcs7?audience=twin"),
	get("/latest/meta-data/ram/security-credentials/EcsRamRoleDemo"),
	get("/latest/api/token"),
	get("/latest/meta-data/instance-id", hdr("Connection", "close")),
	get("/latest/meta-data/instance-id", hdr("Connection", "keep-alive")),
	get("/latest/meta-data/instance-id", hdr("Connection", "Upgrade")),
	get("/latest/meta-data/instance-id", hdr(tokenName, "not-issued")),
	get("/latest/meta-data/instance-id", hdr("X-Ecs-Metadata-Agent-Hop", "1")),
	get("/latest/meta-data/instance-id", hdr("Content-Length", "0")),
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: attacker.example\r\n\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nhost: LOCALHOST\r\n\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost:  127.0.0.1 \t\r\n\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: \r\n\r\n",
	"GET /latest/meta-data/instance-id  HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1 \r\nHost: 127.0.0.1\r\n\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A:\r\n\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n:x\r\n\r\n",
	"GET /" + strings.Repeat("a", 1100) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	"GET /latest/" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	// Heads of one byte under the lean read buffer, of its size, and over.
	get("/latest/meta-data/instance-id", hdr("X-Pad", strings.Repeat("p", leanReadSize-79))),
	get("/latest/meta-data/instance-id", hdr("X-Pad", strings.Repeat("p", leanReadSize-78))),
	get("/latest/meta-data/instance-id", hdr("X-Pad", strings.Repeat("p", leanReadSize))),
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n",
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r",
	"\r\n" + get("/latest/meta-data/instance-id"),
	// Pipelined: lean answers, then a request net/http must take, then
	// more that net/http answers on the same connection.
	get("/latest/meta-data/instance-id") + get("/latest/meta-data/hostname"),
	get("/latest/meta-data/instance-id") + tokenPUT(hdr(ttlName, "60")) +
		get("/latest/meta-data/hostname"),
	get("/latest/meta-data/instance-id", hdr("Connection", "close")) +
		get("/latest/meta-data/hostname"),
	get("/latest/meta-data/instance-id") + "GET /latest/meta-data/instance-id HTTP/1.0\r\n\r\n",
	// Found in review: a later Connection line does not undo "close".
	get("/latest/meta-data/instance-id", hdr("Connection", "close"),
		hdr("Connection", "keep-alive")) + get("/latest/meta-data/hostname"),
}

func TestLeanMatchesNetHTTP(t *testing.T) {
	ts := newTwinServers(t, "tcp")
	for _, raw := range leanShapes {
		checkTwins(t, ts, raw)
	}
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) { checkTwins(t, ts, tc.raw) })
	}
}

// FuzzLeanMatchesNetHTTP sends arbitrary bytes to both servers, over Unix
// sockets (TestLeanMatchesNetHTTP covers what only TCP consumers meet).
func FuzzLeanMatchesNetHTTP(f *testing.F) {
	for _, raw := range leanShapes {
		f.Add(raw)
	}
	for _, tc := range hostileCases {
		if len(tc.raw) < 2048 {
			f.Add(tc.raw)
		}
	}
	ts := newTwinServers(f, "unix")
	f.Fuzz(func(t *testing.T, raw string) {
		checkTwins(t, ts, raw)
	})
}

// TestLeanHitDoesNotAllocate keeps a cache hit served by the agent's own
// listener, request parsing and answer writing included, free of heap
// allocations.
func TestLeanHitDoesNotAllocate(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const path = "/latest/meta-data/instance-id"
	r.get(t, path)
	c, err := net.Dial("tcp", r.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte(get(path, hdr("User-Agent", "lean-test")))
	br := bufio.NewReader(c)
	var failed error
	allocs := testing.AllocsPerRun(500, func() {
		if _, err := c.Write(req); err != nil {
			failed = err
		}
		if err := discardAnswer(br); err != nil {
			failed = err
		}
	})
	if failed != nil || allocs != 0 {
		t.Errorf("%v allocations per hit (error %v), want 0", allocs, failed)
	}
}

// TestLeanHandOffKeepsOrder pipelines reads and a token PUT on one
// connection: every answer comes back, in order, and the reads after the
// PUT (served by net/http) accept the token it issued.
func TestLeanHandOffKeepsOrder(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.RequireToken = true })
	rc := dialRaw(t, "tcp", r.srv.Listener.Addr().String())
	rc.send(get("/latest/meta-data/instance-id") + tokenPUT(hdr(ttlName, "60")))
	res, _, err := rc.answer(http.MethodGet, 5*time.Second)
	if err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("read without a token: %v %v, want 401", res, err)
	}
	res, tok, err := rc.answer(http.MethodPut, 5*time.Second)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("token PUT: %v %v", res, err)
	}
	id, _ := r.sim.Value("/latest/meta-data/instance-id")
	rc.send(get("/latest/meta-data/instance-id", hdr(tokenName, tok)))
	res, body, err := rc.answer(http.MethodGet, 5*time.Second)
	if err != nil || res.StatusCode != http.StatusOK || body != string(id) {
		t.Fatalf("read with the token after the hand-off: %v %q %v", res, body, err)
	}
}

// TestLeanShutdown checks the drain: an idle connection is closed at
// once, a read waiting on upstream is answered, and shutdown returns
// before its bound.
func TestLeanShutdown(t *testing.T) {
	arrived, release := make(chan string, 2), make(chan struct{})
	var once sync.Once
	url := fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		<-release
		_, _ = w.Write([]byte("slow"))
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	a := agentFor(t, url, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lean := newLeanServer(a, a.newServer(a))
	served := make(chan error, 1)
	go func() { served <- lean.serve(ln) }()
	idle := dialRaw(t, "tcp", ln.Addr().String())
	idle.send(get("/latest/meta-data/hostname"))
	<-arrived
	release <- struct{}{}
	if res, _, err := idle.answer(http.MethodGet, 5*time.Second); err != nil {
		t.Fatalf("first answer: %v %v", res, err)
	}
	busy := dialRaw(t, "tcp", ln.Addr().String())
	busy.send(get("/latest/meta-data/instance-id"))
	<-arrived // the busy connection now waits on upstream
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- lean.shutdown(ctx)
	}()
	if !idle.closedByPeer(2 * time.Second) {
		t.Error("idle connection still open during shutdown")
	}
	once.Do(func() { close(release) })
	res, body, err := busy.answer(http.MethodGet, 5*time.Second)
	if err != nil || res.StatusCode != http.StatusOK || body != "slow" {
		t.Errorf("read in flight at shutdown: %v %q %v, want 200 slow", res, body, err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// TestLeanAnswersBeforeStrayBytes sends a request followed by bytes that
// begin no request (found in review: the answer waited for the header
// timeout): the answer must come at once, the connection stay open.
func TestLeanAnswersBeforeStrayBytes(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	for _, stray := range []string{"\r\n", "GET /lat"} {
		rc := dialRaw(t, "tcp", r.srv.Listener.Addr().String())
		rc.send(get("/latest/meta-data/instance-id") + stray)
		if res, _, err := rc.answer(http.MethodGet, time.Second); err != nil ||
			res.StatusCode != http.StatusOK {
			t.Fatalf("answer with %q after it: %v %v", stray, res, err)
		}
		if stray == "\r\n" {
			continue
		}
		rc.send("est/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if res, _, err := rc.answer(http.MethodGet, time.Second); err != nil ||
			res.StatusCode != http.StatusOK {
			t.Fatalf("the request completed after it: %v %v", res, err)
		}
	}
}

func TestHeadLen(t *testing.T) {
	tests := []struct {
		in    string
		n     int
		plain bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", 27, true},
		{"GET / HTTP/1.1\r\nHost: a\r\n", 0, true},
		{"GET / HTTP/1.1\r\nHost: a\n\n", 0, false},
		{"GET / HTTP/1.1\nHost: a\r\n", 0, false},
		{"\n", 0, false},
		{"", 0, true},
	}
	for _, tt := range tests {
		n, plain := headLen([]byte(tt.in))
		if n != tt.n || plain != tt.plain {
			t.Errorf("headLen(%q) = %d, %v; want %d, %v", tt.in, n, plain, tt.n, tt.plain)
		}
	}
}

func TestEqualFold(t *testing.T) {
	for _, tt := range []struct {
		b, s string
		want bool
	}{
		{"host", "Host", true}, {"HOST", "Host", true}, {"Hosts", "Host", false},
		{"Ho-t", "Ho-t", true}, {"Ho\x0dt", "Ho-t", false}, {"[", "{", false},
	} {
		if got := equalFold([]byte(tt.b), tt.s); got != tt.want {
			t.Errorf("equalFold(%q, %q) = %v", tt.b, tt.s, got)
		}
	}
	if !bytes.Equal([]byte(statusLine(299)), []byte("HTTP/1.1 299 status code 299\r\n")) {
		t.Errorf("status line of 299: %q", statusLine(299))
	}
}
