package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)

// rig is an agent in front of a simulator, both on loopback, sharing one
// fake clock.
type rig struct {
	clk   *fakeclock.Clock
	sim   *simulator.Server
	agent *Agent
	srv   *testServer
}

func newRig(t *testing.T, simOpts simulator.Options, edit func(*Config)) *rig {
	t.Helper()
	clk := fakeclock.New(t0)
	simOpts.Now = clk.Now
	sim, err := simulator.Start("127.0.0.1:0", simOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	cfg := Defaults()
	cfg.Upstream = sim.URL()
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return &rig{clk: clk, sim: sim, agent: a, srv: serveAgent(t, a)}
}

// testServer is an agent served as Run serves it, the lean path in front
// of net/http, on a loopback port; its fields and Client are named as
// httptest.Server's.
type testServer struct {
	URL      string
	Listener net.Listener
	client   *http.Client
}

// Client returns a client for the server, its idle connections closed
// when the test ends.
func (s *testServer) Client() *http.Client { return s.client }

// serveAgent serves a until the test ends, then shuts down as Run does.
func serveAgent(t testing.TB, a *Agent) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lean := newLeanServer(a, a.newServer(a))
	done := make(chan error, 1)
	go func() { done <- lean.serve(ln) }()
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 100}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lean.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{URL: "http://" + ln.Addr().String(), Listener: ln,
		client: &http.Client{Transport: tr}}
}

// get sends a GET for path with the given headers and returns status and
// body.
func (r *rig) get(t *testing.T, path string, hdr ...string) (int, string) {
	t.Helper()
	return r.do(t, http.MethodGet, path, hdr...)
}

func (r *rig) do(t *testing.T, method, path string, hdr ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// upstreamGets counts the GETs upstream saw for path.
func (r *rig) upstreamGets(path string) int {
	return r.sim.Stats().Requests["GET "+path]
}

func mustContain(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s = %q, want it to contain %q", what, got, want)
	}
}

// agentFor is an agent in front of the upstream at url, on the clock now
// (nil: time.Now), closed when the test ends.
func agentFor(t *testing.T, url string, now func() time.Time) *Agent {
	t.Helper()
	cfg := Defaults()
	cfg.Upstream = url
	a, err := New(cfg, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// fakeUpstream answers token PUTs with a fixed token and every read with
// read; it stops when the test ends and returns its URL.
func fakeUpstream(t *testing.T, read http.HandlerFunc) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			_, _ = w.Write([]byte("upstream-token"))
			return
		}
		read(w, r)
	}))
	t.Cleanup(up.Close)
	return up.URL
}

// serveOne sends one GET of target to a, in process.
func serveOne(a *Agent, target string) *httptest.ResponseRecorder {
	return serveFrom(a, http.MethodGet, target, "192.0.2.9")
}

// serveFrom sends one request to a, in process, as if from the address
// from, with header name-value pairs.
func serveFrom(a *Agent, method, target, from string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = from + ":40000"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	a.ServeHTTP(w, req)
	return w
}
