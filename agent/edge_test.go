package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// TestHalfClosedClientGetsItsAnswer: a client that sends its request and
// shuts its writing side (as nc -N does) on a cold miss gets the value,
// never an empty 200.
func TestHalfClosedClientGetsItsAnswer(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const p = "/latest/meta-data/hostname"
	r.get(t, "/latest/meta-data/instance-id")
	r.sim.SetFault(p, simulator.Fault{Latency: 200 * time.Millisecond})
	c, err := net.Dial("tcp", r.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	_ = c.(*net.TCPConn).CloseWrite()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	want, _ := r.sim.Value(p)
	if res.StatusCode != 200 || string(body) != string(want) {
		t.Errorf("half-closed client: %d %q, want 200 %q", res.StatusCode, body, want)
	}
}

// TestStaleNeverOutlivesExpirationDuringAFill: the fill a consumer waits
// on fails after the clock has passed Expiration (the fake upstream moves
// the clock while it answers); the held set is not served then.
func TestStaleNeverOutlivesExpirationDuringAFill(t *testing.T) {
	clk := fakeclock.New(t0)
	exp := t0.Add(time.Hour)
	var calls atomic.Int32
	a := agentFor(t, fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			_, _ = fmt.Fprintf(w, `{"Code":"Success","Expiration":"%s"}`, exp.Format(time.RFC3339))
			return
		}
		clk.Set(exp.Add(time.Second))
		http.Error(w, "down", http.StatusServiceUnavailable)
	}), clk.Now)
	if w := serveOne(a, credsPath); w.Code != 200 {
		t.Fatalf("first read: %d", w.Code)
	}
	clk.Set(exp.Add(-time.Second)) // inside the last 15 minutes: the read waits for the fill
	if w := serveOne(a, credsPath); w.Code == 200 {
		t.Errorf("after Expiration passed during the fill: 200 %q, want an error", w.Body)
	}
}

// TestFailedTokenRequestsBackOff: while upstream refuses token requests,
// misses do not each cost a token PUT.
func TestFailedTokenRequestsBackOff(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	r.get(t, "/latest/meta-data/instance-id")
	r.clk.Advance(6 * time.Hour) // the token has lapsed
	r.sim.SetFault("/latest/api/token", simulator.Fault{Status: 500})
	before := r.sim.Stats().TokenPUTs
	for i := 0; i < 20; i++ {
		r.get(t, fmt.Sprintf("/latest/meta-data/nosuch-%d", i))
	}
	if n := r.sim.Stats().TokenPUTs - before; n > 2 {
		t.Errorf("20 misses made %d token PUTs while upstream refused them, want at most 2", n)
	}
	r.sim.ClearFaults()
	r.clk.Advance(maxTokenBackoff)
	if s, _ := r.get(t, "/latest/meta-data/region-id"); s != 200 {
		t.Errorf("after the backoff and recovery: %d, want 200", s)
	}
}

// TestPolicyPrefixesMatchWholeSegments: a rule for ".../App" covers App
// and below, not AppAdmin.
func TestPolicyPrefixesMatchWholeSegments(t *testing.T) {
	p, err := ParsePolicy(strings.NewReader(
		"allow any /latest/meta-data/ram/security-credentials/App\n" +
			"deny any /latest/meta-data/ram/security-credentials/\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := &Consumer{Unix: true}
	for path, want := range map[string]bool{
		"/latest/meta-data/ram/security-credentials/App":      true,
		"/latest/meta-data/ram/security-credentials/AppAdmin": false,
		"/latest/meta-data/ram/security-credentials/":         false,
	} {
		if got, _ := p.Allow(c, path); got != want {
			t.Errorf("Allow(%s) = %v, want %v", path, got, want)
		}
	}
}

// TestUnknownGroupsFailClosed: a peer whose groups could not be read is
// matched by group deny rules and not by group allow rules.
func TestUnknownGroupsFailClosed(t *testing.T) {
	p, err := ParsePolicy(strings.NewReader("allow gid:5300 /latest/user-data\n" +
		"deny gid:5300 /latest/meta-data/instance-id\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := &Consumer{Unix: true, GID: 100, GroupsUnknown: true}
	if ok, _ := p.Allow(c, "/latest/meta-data/instance-id"); ok {
		t.Error("deny rule did not match a peer with unknown groups")
	}
	if _, line := p.Allow(c, "/latest/user-data"); line != 0 {
		t.Errorf("allow rule matched a peer with unknown groups (line %d)", line)
	}
}

// TestUpstreamRedirectKeepsLocation: a 3xx from upstream is passed on
// with its Location, not followed and not stripped.
func TestUpstreamRedirectKeepsLocation(t *testing.T) {
	a := agentFor(t, fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/latest/meta-data/elsewhere", http.StatusMovedPermanently)
	}), nil)
	w := serveOne(a, "/latest/meta-data/moved")
	if w.Code != 301 || w.Header().Get("Location") != "/latest/meta-data/elsewhere" {
		t.Errorf("upstream 301: %d Location %q", w.Code, w.Header().Get("Location"))
	}
}
