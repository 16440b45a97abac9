package clients

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/agent"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// Lead times before Expiration at which the clients refresh: credentials-go
// and alibaba-cloud-sdk-go at 180 s or less, ossutil at 60 s.
const (
	credentialsGoWindow = 180 * time.Second
	ossutilWindow       = 60 * time.Second
)

// fetcher returns a client's next fetch of the role's credentials.
type fetcher func() (stsSet, error)

func credentialsGoFetcher(t *testing.T) fetcher {
	c := newECSCredential(t, role)
	return func() (stsSet, error) { return fetchSet(c) }
}

func ossutilFetcher(t *testing.T) fetcher {
	o := newOssutil(t)
	return func() (stsSet, error) {
		_, s, err := o.fetch(ossutilPath)
		return stsSet{s.AccessKeyId, s.AccessKeySecret, s.SecurityToken}, err
	}
}

// rotationRig is an in-process agent and simulator on a shifted clock,
// started so that the first set of credentials expires `lead` after real
// now: the SDKs, which judge by real time, already see it inside their
// refresh window, while the agent sees six hours left until the test
// moves the clock.
type rotationRig struct {
	*inproc
	clk   *shiftedClock
	first simulator.Credentials
	exp   time.Time // Expiration of first
}

// maintainTokenTTL is the in-process agent's upstream token lifetime. The
// agent runs its maintenance (token refresh, credentials prefetch) every
// tenth of it, at most every 30 s of real time; a 1 s token makes that
// 100 ms, so that a test can let the agent see time pass without waiting
// minutes.
const maintainTokenTTL = time.Second

func startRotation(t *testing.T, lead time.Duration) *rotationRig {
	t.Helper()
	clk := newShiftedClock(lead - simulator.DefaultCredentialLifetime)
	ip := startInProc(t, clk.Now, simulator.Options{HardenedOnly: true},
		func(c *agent.Config) { c.TokenTTL = maintainTokenTTL })
	proxy.point(t, ip.addr())
	first, _ := ip.sim.Credentials(role)
	exp, err := time.Parse(time.RFC3339, first.Expiration)
	if err != nil {
		t.Fatal(err)
	}
	return &rotationRig{inproc: ip, clk: clk, first: first, exp: exp}
}

// TestCredentialsRotation follows one set of credentials to the client's
// refresh window as a timeline: the client fetches the first set; the
// clock moves to 10 minutes before Expiration, inside the agent's refresh
// window (20 to 25 minutes before), where the agent refreshes on its own
// while no consumer asks; then to the client's window, where the client's
// next fetch must return the rotated set with hours of validity. No
// answer may ever be past its Expiration.
func TestCredentialsRotation(t *testing.T) {
	cases := []struct {
		name   string
		client func(*testing.T) fetcher
		at     time.Duration // the client's fetch, before Expiration
	}{
		{"credentials-go", credentialsGoFetcher, credentialsGoWindow - 10*time.Second},
		{"ossutil form", ossutilFetcher, ossutilWindow - 10*time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := startRotation(t, c.at)
			fetch := c.client(t)
			if got, err := fetch(); err != nil || got != setOf(r.first) {
				t.Fatalf("first fetch: %+v, %v; want %s", got, err, r.first.AccessKeyId)
			}
			r.clk.Set(r.exp.Add(-10 * time.Minute))
			r.waitForUpstreamRead(t)
			r.clk.Set(r.exp.Add(-c.at))
			got, err := fetch()
			r.checkRotated(t, got, err, fetch)
			checkNeverPastExpiration(t, r.tap)
			m := r.metrics(t)
			if own := m[`token_refreshes_total{result="ok"}`]; int(own) != r.sim.Stats().TokenPUTs {
				t.Errorf("upstream saw %d token PUTs, the agent made %v",
					r.sim.Stats().TokenPUTs, own)
			}
		})
	}
}

// waitForUpstreamRead waits, on real time since it waits for the agent's
// background work, until upstream has been asked for the credentials once
// more, under either spelling.
func (r *rotationRig) waitForUpstreamRead(t *testing.T) {
	t.Helper()
	before := r.upstreamCredentialReads()
	deadline := time.Now().Add(5 * time.Second)
	for r.upstreamCredentialReads() == before {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not refresh the credentials inside its refresh window")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rotationRig) upstreamCredentialReads() int {
	st := r.sim.Stats()
	return st.Requests["GET "+credentialsPath] + st.Requests["GET "+ossutilPath]
}

// checkRotated fails unless got, the client's fetch inside its window, is
// the simulator's current set, a new one with hours left. On failure it
// fetches once more to tell a late rotation from none.
func (r *rotationRig) checkRotated(t *testing.T, got stsSet, err error, fetch fetcher) {
	t.Helper()
	cur, _ := r.sim.Credentials(role)
	exp, _ := time.Parse(time.RFC3339, cur.Expiration)
	left := exp.Sub(r.clk.Now())
	if err == nil && got == setOf(cur) && cur != r.first && left > 5*time.Hour {
		return
	}
	again, err2 := fetch()
	t.Errorf("fetch %v before Expiration: %s (%v); want the rotated set %s with %v left. "+
		"The client's following fetch got %s (%v)", r.exp.Sub(r.clk.Now()).Round(time.Second),
		r.describe(got), err, cur.AccessKeyId, left.Round(time.Minute), r.describe(again), err2)
}

func (r *rotationRig) describe(s stsSet) string {
	if s == setOf(r.first) {
		return "the first set " + s.AccessKeyId
	}
	return "set " + s.AccessKeyId
}

// checkNeverPastExpiration fails if the agent ever answered 200 with
// credentials whose Expiration had passed when it answered.
func checkNeverPastExpiration(t *testing.T, tp *tap) {
	t.Helper()
	n := 0
	for _, e := range tp.exchanges() {
		if e.status != http.StatusOK || !strings.Contains(strings.ToLower(e.path),
			"/ram/security-credentials/"+strings.ToLower(role)) {
			continue
		}
		var doc struct{ Expiration string }
		exp, err := time.Parse(time.RFC3339, expirationOf(e.body, &doc))
		if err != nil || !e.at.Before(exp) {
			t.Errorf("at %v the agent answered credentials expiring %q", e.at, doc.Expiration)
		}
		n++
	}
	if n == 0 {
		t.Error("the tap saw no credentials answered")
	}
}

func expirationOf(body []byte, doc *struct{ Expiration string }) string {
	_ = json.Unmarshal(body, doc)
	return doc.Expiration
}

// TestCredentialsNeverServedPastExpiration keeps upstream failing from 170
// seconds before Expiration: credentials-go gets the held set while it is
// valid, and an error once it has expired, never the expired set.
func TestCredentialsNeverServedPastExpiration(t *testing.T) {
	r := startRotation(t, credentialsGoWindow-10*time.Second)
	fetch := credentialsGoFetcher(t)
	if got, err := fetch(); err != nil || got != setOf(r.first) {
		t.Fatalf("first fetch: %+v, %v; want %s", got, err, r.first.AccessKeyId)
	}
	r.sim.SetFault(credentialsPath, simulator.Fault{Status: http.StatusInternalServerError})
	steps := []struct {
		at      time.Duration // from Expiration
		wantErr bool
	}{
		{-170 * time.Second, false},
		{-time.Second, false},
		{time.Second, true},
		{time.Minute, true},
	}
	for _, s := range steps {
		r.clk.Set(r.exp.Add(s.at))
		got, err := fetch()
		if s.wantErr && err == nil {
			t.Errorf("at Expiration%+v: got %s, want an error", s.at, r.describe(got))
		}
		if !s.wantErr && (err != nil || got != setOf(r.first)) {
			t.Errorf("at Expiration%+v: %s, %v; want the held set", s.at, r.describe(got), err)
		}
	}
	checkNeverPastExpiration(t, r.tap)
}
