package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

func secs(n int) time.Duration { return time.Duration(n) * time.Second }

// TestColdHerd sends 1,000 concurrent requests for one cold key while
// upstream is slow; the first 100 callers give up early. Upstream must see
// one GET and the other 900 callers must get the value.
func TestColdHerd(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const path = "/latest/meta-data/serial-number"
	r.get(t, "/latest/meta-data/instance-id") // the token is held before the herd
	r.sim.SetFault(path, simulator.Fault{Latency: 300 * time.Millisecond})
	want, _ := r.sim.Value(path)
	var wg sync.WaitGroup
	results := make([]int, 1000)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := 10 * time.Second
			if i < 100 {
				timeout = 20 * time.Millisecond
			}
			results[i] = herdGet(r, path, string(want), timeout)
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range results[100:] {
		if s == 200 {
			ok++
		}
	}
	if ok != 900 {
		t.Errorf("%d of the 900 patient callers got the value, want 900", ok)
	}
	if n := r.upstreamGets(path); n != 1 {
		t.Errorf("upstream saw %d GETs of %s, want 1", n, path)
	}
}

// herdGet returns the status, or 0 when the caller gave up or the body
// was wrong.
func herdGet(r *rig, path, want string, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.srv.URL+path, nil)
	res, err := r.srv.Client().Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	var buf [256]byte
	n, _ := res.Body.Read(buf[:])
	if string(buf[:n]) != want {
		return 0
	}
	return res.StatusCode
}

func TestRevokedUpstreamTokenIsReplaced(t *testing.T) {
	r := newRig(t, simulator.Options{HardenedOnly: true}, nil)
	if s, _ := r.get(t, "/latest/meta-data/instance-id"); s != 200 {
		t.Fatalf("first GET: %d", s)
	}
	r.sim.RevokeTokens()
	if s, body := r.get(t, "/latest/meta-data/zone-id"); s != 200 {
		t.Fatalf("GET after revocation: %d %q, want 200", s, body)
	}
	if st := r.sim.Stats(); st.TokensIssued != 2 || st.Unauthorized != 1 {
		t.Errorf("upstream issued %d tokens and answered %d 401s, want 2 and 1",
			st.TokensIssued, st.Unauthorized)
	}
}

// TestUpstreamTokenTimeline runs the upstream token through its life on the
// fake clock: held, refreshed ahead of expiry while still in use, and
// fetched again inline once it has lapsed.
func TestUpstreamTokenTimeline(t *testing.T) {
	r := newRig(t, simulator.Options{HardenedOnly: true},
		func(c *Config) { c.TokenTTL = 100 * time.Second })
	steps := []struct {
		advance    int // seconds
		path       string
		wantIssued int
	}{
		{0, "/latest/meta-data/region-id", 1},
		{60, "/latest/meta-data/hostname", 1},                // before 70 s: no refresh
		{25, "/latest/meta-data/private-ipv4", 2},            // at 85 s: refreshed early
		{200, "/latest/meta-data/instance/instance-type", 3}, // lapsed: new one inline
	}
	for _, s := range steps {
		r.clk.Advance(secs(s.advance))
		if status, body := r.get(t, s.path); status != 200 {
			t.Fatalf("+%ds %s: %d %q", s.advance, s.path, status, body)
		}
		waitFor(t, func() bool { return r.sim.Stats().TokensIssued >= s.wantIssued })
		if n := r.sim.Stats().TokensIssued; n != s.wantIssued {
			t.Errorf("after +%ds: %d tokens issued, want %d", s.advance, n, s.wantIssued)
		}
	}
	if n := r.sim.Stats().Unauthorized; n != 0 {
		t.Errorf("upstream answered %d 401s, want 0: the token was used past its life", n)
	}
}

// waitFor polls cond for background work the test cannot join (a refresh
// started by a request); time in the test itself stays on the fake clock.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// TestCredentialsTimeline follows one role's credentials on the fake
// clock: served from cache until 20 to 25 minutes (jittered) before
// Expiration; then served
// at once while a background refresh fetches the rotated set.
func TestCredentialsTimeline(t *testing.T) {
	r := newRig(t, simulator.Options{CredentialLifetime: 6 * time.Hour,
		RotateBefore: 30 * time.Minute}, nil)
	const path = "/latest/meta-data/ram/security-credentials/EcsRamRoleDemo"
	first := readCreds(t, r, path)
	exp, _ := time.Parse(time.RFC3339, first.Expiration)

	r.clk.Set(exp.Add(-26 * time.Minute))
	if got := readCreds(t, r, path); got != first || r.upstreamGets(path) != 1 {
		t.Errorf("at Expiration-26m: %+v after %d upstream GETs, want the cached set after 1",
			got, r.upstreamGets(path))
	}
	r.clk.Set(exp.Add(-19 * time.Minute))
	if got := readCreds(t, r, path); got != first {
		t.Errorf("at Expiration-19m: %+v, want the held set served without waiting", got)
	}
	var got creds
	waitFor(t, func() bool { got = readCreds(t, r, path); return got != first })
	gotExp, _ := time.Parse(time.RFC3339, got.Expiration)
	if got == first || !gotExp.After(exp) || r.upstreamGets(path) != 2 {
		t.Errorf("after the refresh: %+v after %d upstream GETs, want a later set after 2",
			got, r.upstreamGets(path))
	}
}

// TestCredentialsNeverServedPastExpiration keeps upstream from rotating and
// then failing, so that only the cached set remains.
func TestCredentialsNeverServedPastExpiration(t *testing.T) {
	r := newRig(t, simulator.Options{CredentialLifetime: time.Hour, RotateBefore: time.Nanosecond},
		nil)
	const path = "/latest/meta-data/ram/security-credentials/EcsRamRoleDemo"
	first := readCreds(t, r, path)
	exp, _ := time.Parse(time.RFC3339, first.Expiration)
	r.sim.SetFault(path, simulator.Fault{Status: 500})
	steps := []struct {
		at     time.Duration // from Expiration
		status int
	}{
		{-10 * time.Minute, 200}, // stale but valid: served while refresh fails
		{-time.Second, 200},
		{0, 500}, // at Expiration: never the old set
		{time.Minute, 500},
	}
	for _, s := range steps {
		r.clk.Set(exp.Add(s.at))
		status, body := r.get(t, path)
		if status != s.status {
			t.Errorf("at Expiration%+v: %d, want %d", s.at, status, s.status)
		}
		if status == 200 && body == "" {
			t.Errorf("at Expiration%+v: empty 200", s.at)
		}
	}
}

type creds struct {
	AccessKeyId, Expiration, Code string
}

func readCreds(t *testing.T, r *rig, path string) creds {
	t.Helper()
	status, body := r.get(t, path)
	var c creds
	if err := json.Unmarshal([]byte(body), &c); status != 200 || err != nil || c.Code != "Success" {
		t.Fatalf("GET %s: %d %q (%v)", path, status, body, err)
	}
	return c
}
