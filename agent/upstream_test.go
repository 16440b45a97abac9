package agent

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestUpstreamKeepsItsConnection checks that the agent reads upstream over
// one kept-alive connection, and keeps it idle for minutes: a herd that
// comes after a quiet spell otherwise opens a new one while its thousand
// requests hold the agent's core, and the bench measured that set-up at
// 5 ms (see the README's Performance findings).
func TestUpstreamKeepsItsConnection(t *testing.T) {
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			_, _ = w.Write([]byte("upstream-token"))
			return
		}
		_, _ = w.Write([]byte("answer of " + r.URL.Path))
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	a := agentFor(t, up.URL, nil)
	for _, p := range []string{"/latest/meta-data/instance-id", "/latest/meta-data/image-id",
		"/latest/meta-data/region-id"} {
		if w := serveOne(a, p); w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, w.Code, w.Body)
		}
	}
	if n := conns.Load(); n != 1 {
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
