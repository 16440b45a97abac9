package agent

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

const credsPath = "/latest/meta-data/ram/security-credentials/EcsRamRoleDemo"

// TestCredentialsStayFreshFor24Hours walks a day on the fake clock, minute
// by minute, with the background prefetch running as it would. Every
// answer must have more than 15 minutes of validity left and never be past
// Expiration.
func TestCredentialsStayFreshFor24Hours(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	readCreds(t, r, credsPath)
	worst := 24 * time.Hour
	for minute := 0; minute < 24*60; minute++ {
		r.clk.Advance(time.Minute)
		r.agent.Maintain()
		got := readCreds(t, r, credsPath)
		exp, _ := time.Parse(time.RFC3339, got.Expiration)
		worst = min(worst, exp.Sub(r.clk.Now()))
	}
	if worst <= 15*time.Minute {
		t.Errorf("an answer had only %v of validity left, want more than 15m", worst)
	}
	if n := r.upstreamGets(credsPath); n > 24*60/60 {
		t.Errorf("%d upstream credential GETs in 24 h, want a handful (one per rotation)", n)
	}
}

// TestThrottledUpstream: upstream allows 5 requests/s. 500 concurrent
// consumers of warm keys cost no upstream request and get no 429; a cold
// key costs one upstream fetch, retried with backoff until it succeeds.
func TestThrottledUpstream(t *testing.T) {
	sim, err := simulator.Start("127.0.0.1:0", simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := Defaults()
	cfg.Upstream = sim.URL()
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Start(nil)
	srv := serveAgent(t, a)
	waitFor(t, a.Ready)
	sim.SetRateLimit(5, 1)
	sim.ResetStats()
	warm := "/latest/meta-data/instance-id"
	if got := herd(srv, warm, 500); got[200] != 500 {
		t.Errorf("warm key: answers by status %v, want 500 x 200", got)
	}
	if n := total(sim.Stats().Requests); n != 0 {
		t.Errorf("warm key: %d upstream requests, want 0", n)
	}
	cold := "/latest/meta-data/hostname"
	if got := herd(srv, cold, 500); got[200] != 500 {
		t.Errorf("cold key: answers by status %v, want 500 x 200", got)
	}
	st := sim.Stats()
	if n := st.Requests["GET "+cold]; n < 1 || n-st.Throttled != 1 {
		t.Errorf("cold key: %d upstream GETs, %d throttled; want one that got through", n,
			st.Throttled)
	}
}

// herd sends n concurrent GETs of path and counts the answers by status.
func herd(srv *testServer, path string, n int) map[int]int {
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := 0
			if res, err := srv.Client().Get(srv.URL + path); err == nil {
				res.Body.Close()
				status = res.StatusCode
			}
			mu.Lock()
			got[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return got
}

// TestUpstreamDownTenMinutes drops every upstream connection for ten
// minutes around the credentials' Expiration. Identity items are served
// stale; credentials until Expiration, then a quick 502, never an empty
// 200; when upstream is back, fresh values come at once.
func TestUpstreamDownTenMinutes(t *testing.T) {
	// The simulator keeps one set until it expires, so the outage decides.
	r := newRig(t, simulator.Options{RotateBefore: time.Nanosecond}, nil)
	items := []string{"/latest/meta-data/instance-id", "/latest/meta-data/hostname"}
	exp, _ := time.Parse(time.RFC3339, readCreds(t, r, credsPath).Expiration)
	r.clk.Set(exp.Add(-9 * time.Minute))
	for _, p := range append(items, credsPath) {
		if s, _ := r.get(t, p); s != 200 {
			t.Fatalf("before the outage %s: %d", p, s)
		}
	}
	r.sim.SetFault("", simulator.Fault{Drop: true})
	for m := -8; m <= 1; m++ {
		r.clk.Set(exp.Add(time.Duration(m) * time.Minute))
		for _, p := range items {
			if s, body := r.get(t, p); s != 200 || body == "" {
				t.Errorf("Expiration%+dm %s: %d %q, want the stale value", m, p, s, body)
			}
		}
		wantCreds := 200
		if m >= 0 {
			wantCreds = http.StatusBadGateway
		}
		start := time.Now()
		s, body := r.get(t, credsPath)
		if s != wantCreds || (s == 200 && body == "") || time.Since(start) > time.Second {
			t.Errorf("Expiration%+dm credentials: %d %q after %v, want %d within 1s", m, s, body,
				time.Since(start), wantCreds)
		}
	}
	r.sim.ClearFaults()
	r.clk.Set(exp.Add(2 * time.Minute))
	got := readCreds(t, r, credsPath)
	if newExp, _ := time.Parse(time.RFC3339, got.Expiration); !newExp.After(r.clk.Now()) {
		t.Errorf("after recovery: credentials expiring %v, want a valid set", newExp)
	}
}

// TestHangingUpstreamAnswersWithinDeadline: upstream accepts and never
// answers; every consumer answer still comes within the deadline.
func TestHangingUpstreamAnswersWithinDeadline(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.UpstreamTimeout = 300 * time.Millisecond })
	r.get(t, "/latest/meta-data/instance-id")
	r.sim.SetFault("", simulator.Fault{Hang: true})
	start := time.Now()
	got := herd(r.srv, "/latest/meta-data/serial-number", 50)
	if got[http.StatusBadGateway] != 50 || time.Since(start) > 2*time.Second {
		t.Errorf("answers %v after %v, want 50 x 502 within the 300ms deadline", got,
			time.Since(start))
	}
}

// TestWarmupBeforeReady: upstream takes 1.5 s per answer; the agent is
// ready only once the warm-up paths are cached, and the first consumer
// request after ready needs no upstream call.
func TestWarmupBeforeReady(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.UpstreamTimeout = 5 * time.Second })
	r.sim.SetFault("/latest/meta-data/", simulator.Fault{Latency: 1500 * time.Millisecond})
	ready := make(chan struct{})
	r.agent.Start(func() { close(ready) })
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		t.Fatal("not ready within 15 s")
	}
	before := r.sim.Stats()
	for _, p := range []string{credsPath, "/latest/meta-data/instance-id",
		"/latest/meta-data/region-id", "/latest/meta-data/zone-id"} {
		if s, _ := r.get(t, p); s != 200 {
			t.Errorf("%s after ready: %d", p, s)
		}
	}
	if after := r.sim.Stats(); total(after.Requests) != total(before.Requests) {
		t.Errorf("first requests after ready made %d upstream calls, want 0",
			total(after.Requests)-total(before.Requests))
	}
}

// TestConsumerLimit: one consumer floods cold keys and is answered 429;
// another consumer is still served.
func TestConsumerLimit(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.ConsumerRate, c.ConsumerBurst = 1, 5 })
	get := func(from, path string) int {
		return serveFrom(r.agent, http.MethodGet, path, from).Code
	}
	codes := map[int]int{}
	for i := 0; i < 20; i++ {
		codes[get("192.0.2.1", fmt.Sprintf("/latest/meta-data/nosuch-%d", i))]++
	}
	if codes[404] != 5 || codes[429] != 15 {
		t.Errorf("flooding consumer: %v, want 5 x 404 then 15 x 429", codes)
	}
	if c := get("192.0.2.2", "/latest/meta-data/region-id"); c != 200 {
		t.Errorf("other consumer: %d, want 200", c)
	}
	if c := get("192.0.2.1", "/latest/meta-data/nosuch-0"); c != 404 {
		t.Errorf("flooding consumer, cached key: %d, want the cached 404", c)
	}
}

// TestErrorsAreNeverCached: a 500 is passed through but not kept; once
// upstream recovers the next answer is the real one.
func TestErrorsAreNeverCached(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const p = "/latest/meta-data/vpc-id"
	r.sim.SetFault(p, simulator.Fault{Status: 503})
	if s, _ := r.get(t, p); s != 503 {
		t.Fatalf("during the fault: %d, want 503 passed through", s)
	}
	r.sim.ClearFaults()
	want, _ := r.sim.Value(p)
	if s, body := r.get(t, p); s != 200 || body != string(want) {
		t.Errorf("after recovery: %d %q, want 200 %q", s, body, want)
	}
}

// TestNotFoundIsCachedBriefly follows a 404 on the fake clock.
func TestNotFoundIsCachedBriefly(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.NotFoundTTL = 5 * time.Second })
	const p = "/latest/meta-data/instance/spot/termination-time"
	steps := []struct {
		advance   time.Duration
		spotSet   bool
		want      int
		upstreams int
	}{
		{0, false, 404, 1},
		{time.Second, false, 404, 2}, // spot time is never cached, not even a 404
		{0, true, 200, 3},
	}
	for i, s := range steps {
		r.clk.Advance(s.advance)
		if s.spotSet {
			r.sim.SetSpotTermination(t0.Add(time.Hour))
		}
		if got, _ := r.get(t, p); got != s.want || r.upstreamGets(p) != s.upstreams {
			t.Errorf("step %d: %d after %d upstream GETs, want %d after %d", i, got,
				r.upstreamGets(p), s.want, s.upstreams)
		}
	}
	const missing = "/latest/meta-data/nosuch"
	for i, s := range []struct {
		advance   time.Duration
		upstreams int
	}{{0, 1}, {4 * time.Second, 1}, {time.Second, 2}} {
		r.clk.Advance(s.advance)
		r.get(t, missing)
		if n := r.upstreamGets(missing); n != s.upstreams {
			t.Errorf("404 step %d: %d upstream GETs, want %d", i, n, s.upstreams)
		}
	}
}

// TestClockJumpWaitsForFreshCredentials: after a jump (a resume from
// suspend) to 10 minutes before Expiration, with no background round in
// between, the held set is not served: the consumer waits for the refresh.
func TestClockJumpWaitsForFreshCredentials(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	first := readCreds(t, r, credsPath)
	exp, _ := time.Parse(time.RFC3339, first.Expiration)
	r.clk.Set(exp.Add(-10 * time.Minute))
	got := readCreds(t, r, credsPath)
	gotExp, _ := time.Parse(time.RFC3339, got.Expiration)
	if got == first || gotExp.Sub(r.clk.Now()) <= 15*time.Minute {
		t.Errorf("after the jump: %+v, want a new set with more than 15 minutes left", got)
	}
}

// TestMaintainRefreshesAhead: one background round inside the refresh
// window fetches the new set before any consumer asks.
func TestMaintainRefreshesAhead(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	first := readCreds(t, r, credsPath)
	exp, _ := time.Parse(time.RFC3339, first.Expiration)
	r.clk.Set(exp.Add(-19 * time.Minute))
	r.agent.Maintain()
	if n := r.upstreamGets(credsPath); n != 2 {
		t.Fatalf("after Maintain: %d upstream credential GETs, want 2", n)
	}
	if got := readCreds(t, r, credsPath); got == first || r.upstreamGets(credsPath) != 2 {
		t.Errorf("consumer got %+v after %d upstream GETs, want the new set from cache", got,
			r.upstreamGets(credsPath))
	}
}

// TestTokenFloodIsLimitedPerConsumer: one consumer's PUTs beyond its burst
// get 429, so it cannot push others' tokens out of the bounded store;
// another consumer still gets tokens.
func TestTokenFloodIsLimitedPerConsumer(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.ConsumerRate, c.ConsumerBurst = 1, 5 })
	put := func(from string) int {
		return serveFrom(r.agent, http.MethodPut, "/latest/api/token", from,
			"X-aliyun-ecs-metadata-token-ttl-seconds", "60").Code
	}
	codes := map[int]int{}
	for i := 0; i < 20; i++ {
		codes[put("192.0.2.1")]++
	}
	if codes[200] != 5 || codes[429] != 15 {
		t.Errorf("flooding consumer: %v, want 5 x 200 then 15 x 429", codes)
	}
	if c := put("192.0.2.2"); c != 200 {
		t.Errorf("other consumer: %d, want 200", c)
	}
}

// TestUpstreamExpiredCredentialsAreNotServed: an upstream whose clock is
// behind hands out a set already past its Expiration; the agent answers
// 502 rather than pass it on.
func TestUpstreamExpiredCredentialsAreNotServed(t *testing.T) {
	a := agentFor(t, fakeUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, `{"Code":"Success","Expiration":"%s"}`,
			t0.Add(-time.Second).Format(time.RFC3339))
	}), func() time.Time { return t0 })
	w := serveOne(a, credsPath)
	if w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), "Expiration") {
		t.Errorf("expired set from upstream: %d %q, want 502 without the set", w.Code, w.Body)
	}
}

// TestLongTargetsAreRefused: path plus query over 1024 bytes is 414, and
// cache entries are weighed with their keys.
func TestLongTargetsAreRefused(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	if s, _ := r.get(t, "/latest/meta-data/instance-id?a="+strings.Repeat("a", 1100)); s != 414 {
		t.Errorf("long query: %d, want 414", s)
	}
	key := "/latest/meta-data/instance-id?a=" + strings.Repeat("b", 900)
	r.get(t, key)
	if got := r.agent.cache.Stats().Bytes; got < 900 {
		t.Errorf("cache weighs %d bytes after a 930-byte key, want the key counted", got)
	}
}

// TestPrefetchForgetsGoneKeys: a credentials key that left the cache is no
// longer refreshed in the background.
func TestPrefetchForgetsGoneKeys(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	readCreds(t, r, credsPath)
	r.get(t, credsPath+"?n=1")
	r.agent.cache.Purge()
	if started := r.agent.prefetch(); len(started) != 0 {
		t.Errorf("prefetch started %d refreshes of keys no longer cached", len(started))
	}
	n := 0
	r.agent.revalidated.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d keys still tracked, want 0", n)
	}
}

// TestStaleAtOnceWhileUpstreamIsDown: after one failed fill against a
// hanging upstream, stale values come at once for the next 5 s instead of
// after another attempt; once that passes, upstream is tried again.
func TestStaleAtOnceWhileUpstreamIsDown(t *testing.T) {
	r := newRig(t, simulator.Options{}, func(c *Config) { c.UpstreamTimeout = 300 * time.Millisecond })
	const p = "/latest/meta-data/hostname"
	r.get(t, p)
	r.clk.Advance(2 * time.Minute) // past fresh, within stale
	r.sim.SetFault("", simulator.Fault{Hang: true})
	if s, _ := r.get(t, p); s != 200 {
		t.Fatalf("first stale read: %d", s)
	}
	if !r.agent.upstreamDown() {
		t.Fatal("a failed fill did not mark upstream down")
	}
	before := r.upstreamGets(p)
	for i := 0; i < 5; i++ {
		if s, body := r.get(t, p); s != 200 || body == "" {
			t.Errorf("stale read %d while down: %d %q", i, s, body)
		}
	}
	// Each read was answered without waiting on an attempt of its own: at
	// most the one background refresh, shared by all, reached upstream.
	if n := r.upstreamGets(p) - before; n > 1 {
		t.Errorf("5 stale reads while down made %d upstream attempts, want at most 1", n)
	}
	r.sim.ClearFaults()
	r.clk.Advance(downFor)
	if r.agent.upstreamDown() {
		t.Error("upstream still marked down after downFor")
	}
}
