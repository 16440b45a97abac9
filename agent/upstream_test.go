package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestUpstreamKeepsItsConnection checks that the agent reads upstream over
// one kept-alive connection, and keeps it idle for minutes: a herd that
// comes after a quiet spell otherwise opens a new one while its thousand
// requests hold the agent's core (the README's Performance findings).
func TestUpstreamKeepsItsConnection(t *testing.T) {
	up := newDeadConnUpstream(t, nil)
	a := agentFor(t, up.srv.URL, nil)
	for _, p := range []string{"/latest/meta-data/instance-id", "/latest/meta-data/image-id",
		"/latest/meta-data/region-id"} {
		if w := serveOne(a, p); w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, w.Code, w.Body)
		}
	}
	if n := up.opened.Load(); n != 1 {
		t.Errorf("the token and 3 reads took %d upstream connections, want 1", n)
	}
	tr, ok := a.up.client.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("upstream transport is a %T", a.up.client.Transport)
	}
	if tr.IdleConnTimeout < 5*time.Minute || tr.DisableKeepAlives {
		t.Errorf("upstream connections idle for %v at most (keep-alives off: %v), want 5m or more",
			tr.IdleConnTimeout, tr.DisableKeepAlives)
	}
}

// connKey is the context key under which deadConnUpstream's server keeps
// each request's connection.
type connKey struct{}

// deadConnUpstream is an upstream whose connections can be made to go
// silent, as connections to a service that went away without a word: a
// request on a silenced connection is read and never answered.
type deadConnUpstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	conns  map[net.Conn]bool // every connection, and whether it is silenced
	opened atomic.Int32
	groups map[string]*meeting // reads marked ?together=NAME
}

// A meeting holds reads until size of them are held, so that each is on
// a connection of its own.
type meeting struct {
	size, arrived int // arrived under the upstream's mu
	all           chan struct{}
}

func (d *deadConnUpstream) meet(name string) {
	d.mu.Lock()
	m := d.groups[name]
	if m.arrived++; m.arrived == m.size {
		close(m.all)
	}
	d.mu.Unlock()
	select {
	case <-m.all:
	case <-time.After(5 * time.Second): // a bound on a broken test, not a wait for time to pass
	}
}

// newDeadConnUpstream starts the upstream; groups gives the size of each
// meeting the test will hold.
func newDeadConnUpstream(t *testing.T, groups map[string]int) *deadConnUpstream {
	t.Helper()
	d := &deadConnUpstream{conns: map[net.Conn]bool{}, groups: map[string]*meeting{}}
	for name, size := range groups {
		d.groups[name] = &meeting{size: size, all: make(chan struct{})}
	}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	d.srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		d.mu.Lock()
		d.conns[c] = false
		d.mu.Unlock()
		d.opened.Add(1)
		return context.WithValue(ctx, connKey{}, c)
	}
	d.srv.Start()
	t.Cleanup(d.srv.Close)
	return d
}

func (d *deadConnUpstream) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	silent := d.conns[r.Context().Value(connKey{}).(net.Conn)]
	d.mu.Unlock()
	switch q := r.URL.Query(); {
	case silent:
		<-r.Context().Done() // until the agent gives up and closes it
	case r.Method == http.MethodPut:
		_, _ = w.Write([]byte("upstream-token"))
	case q.Has("together"):
		d.meet(q.Get("together"))
		_, _ = w.Write([]byte("answer of " + r.URL.Path))
	case q.Has("broken"): // 10 bytes of a 100-byte answer, then the connection dropped
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("0123456789"))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	default:
		_, _ = w.Write([]byte("answer of " + r.URL.Path))
	}
}

// readTogether reads paths at once, each with ?together=group, and fails
// the test unless each is answered 200.
func readTogether(t *testing.T, a *Agent, group string, paths ...string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Go(func() {
			if w := serveOne(a, "/latest/meta-data/"+p+"?together="+group); w.Code != http.StatusOK {
				t.Errorf("read of %s with %s: %d %s", p, group, w.Code, w.Body)
			}
		})
	}
	wg.Wait()
}

// silence makes every connection open so far go silent.
func (d *deadConnUpstream) silence() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		d.conns[c] = true
	}
}

// TestDeadUpstreamConnectionsAreDropped: several upstream connections sit
// idle, then all go silent. The first read on one of them times out; the
// agent then drops the other idle ones too, so the next read opens a new
// connection and is answered, rather than failing on the next dead one.
func TestDeadUpstreamConnectionsAreDropped(t *testing.T) {
	up := newDeadConnUpstream(t, map[string]int{"a": 3})
	a := agentWithTimeout(t, up.srv.URL, 300*time.Millisecond)
	if w := serveOne(a, "/latest/meta-data/instance-id"); w.Code != http.StatusOK {
		t.Fatalf("first read: %d %s", w.Code, w.Body)
	}
	readTogether(t, a, "a", "image-id", "region-id", "zone-id")
	idle := up.opened.Load()
	if idle < 3 {
		t.Fatalf("%d upstream connections after 3 concurrent reads, want 3 or more", idle)
	}
	up.silence()
	if w := serveOne(a, "/latest/meta-data/hostname"); w.Code != http.StatusBadGateway {
		t.Fatalf("read on a silent connection: %d %s, want 502 at the deadline", w.Code, w.Body)
	}
	w := serveOne(a, "/latest/meta-data/serial-number")
	if w.Code != http.StatusOK {
		t.Errorf("read after the timeout: %d %s, want 200 on a new connection (%d connections were idle)",
			w.Code, w.Body, idle)
	}
	if n := up.opened.Load(); n != idle+1 {
		t.Errorf("%d upstream connections in all, want the %d before and 1 new", n, idle)
	}
}

// TestBrokenAnswerKeepsOtherConnections: an answer cut off after it began
// fails its read, but says nothing of the other idle connections, which
// the next reads use rather than dialling anew.
func TestBrokenAnswerKeepsOtherConnections(t *testing.T) {
	up := newDeadConnUpstream(t, map[string]int{"a": 3, "b": 2})
	a := agentWithTimeout(t, up.srv.URL, 2*time.Second)
	readTogether(t, a, "a", "image-id", "region-id", "zone-id")
	before := up.opened.Load()
	if before < 3 {
		t.Fatalf("%d upstream connections after 3 concurrent reads, want 3 or more", before)
	}
	if w := serveOne(a, "/latest/meta-data/hostname?broken"); w.Code != http.StatusBadGateway {
		t.Fatalf("read of a cut-off answer: %d %s, want 502", w.Code, w.Body)
	}
	readTogether(t, a, "b", "serial-number", "instance-type")
	if n := up.opened.Load(); n != before {
		t.Errorf("%d upstream connections after the cut-off answer and 2 concurrent reads, "+
			"want the %d before: the idle ones dropped", n, before)
	}
}

// agentWithTimeout is an agent in front of url with the given upstream
// deadline, closed when the test ends.
func agentWithTimeout(t *testing.T, url string, timeout time.Duration) *Agent {
	t.Helper()
	cfg := Defaults()
	cfg.Upstream = url
	cfg.UpstreamTimeout = timeout
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// TestTokenFailureIsLogged: a failed token request is logged with what
// went wrong and when the next one will be tried, and upstream's answer
// is not quoted.
func TestTokenFailureIsLogged(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			http.Error(w, "secret-looking-body", http.StatusInternalServerError)
			return
		}
		t.Errorf("%s %s sent without a token", r.Method, r.URL.Path)
	}))
	t.Cleanup(refuse.Close)
	core, logs := observer.New(zap.InfoLevel)
	cfg := Defaults()
	cfg.Upstream = refuse.URL
	a, err := New(cfg, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if w := serveOne(a, "/latest/meta-data/instance-id"); w.Code != http.StatusBadGateway {
		t.Fatalf("read without a token: %d %s, want 502", w.Code, w.Body)
	}
	got := logs.FilterMessage("upstream token request failed").All()
	if len(got) != 1 {
		t.Fatalf("%d 'upstream token request failed' lines, want 1; log: %v", len(got), logs.All())
	}
	f := got[0].ContextMap()
	if e, _ := f["error"].(string); !strings.Contains(e, "500") {
		t.Errorf("error field %q, want the status 500 in it", e)
	}
	if _, ok := f["next_try_in"]; !ok {
		t.Errorf("no next_try_in field: %v", f)
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, _ := v.(string); strings.Contains(s, "secret-looking-body") {
				t.Errorf("log %q field %s quotes upstream's body: %q", e.Message, k, s)
			}
		}
	}
}
