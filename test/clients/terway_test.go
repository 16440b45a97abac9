package clients

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// Terway's habits with the metadata service.
const (
	terwayTokenLife = 3 * time.Hour // how long one token is kept
	terwayMaxTries  = 5             // reads of one item on 429 and 5xx
)

// terway reads metadata the way the ACK CNI does: always with a token,
// one token kept for three hours; 429 and 5xx retried with backoff; a 401
// drops the token and the read is retried once with a new one.
type terway struct {
	client  *http.Client
	base    string
	now     func() time.Time
	backoff func(attempt int) // waits before a retry; tests count instead
	token   string
	tokenAt time.Time
	puts    int
}

func (c *terway) get(path string) (int, []byte, error) {
	renewed := false
	for attempt := 1; ; attempt++ {
		tok, err := c.currentToken()
		if err != nil {
			return 0, nil, err
		}
		status, body, err := c.read(path, tok)
		switch {
		case err != nil:
			return 0, nil, err
		case status == http.StatusUnauthorized && !renewed:
			c.token, renewed = "", true
		case (status == http.StatusTooManyRequests || status >= 500) &&
			attempt < terwayMaxTries:
			c.backoff(attempt)
		default:
			return status, body, nil
		}
	}
}

// currentToken returns the held token, or PUTs for a new one once it is
// three hours old or was dropped.
func (c *terway) currentToken() (string, error) {
	if c.token != "" && c.now().Sub(c.tokenAt) < terwayTokenLife {
		return c.token, nil
	}
	req, err := http.NewRequest(http.MethodPut, c.base+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
	c.puts++
	status, body, err := roundTrip(c.client, req)
	if err != nil || status != http.StatusOK {
		return "", fmt.Errorf("token PUT: %d %q, %v", status, body, err)
	}
	c.token, c.tokenAt = string(body), c.now()
	return c.token, nil
}

func (c *terway) read(path, tok string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-aliyun-ecs-metadata-token", tok)
	return roundTrip(c.client, req)
}

// TestTerwayTimeline runs terway's habits against the in-process agent on
// a fake clock, as a timeline: one token reused for three hours, then a
// new one; an agent restart that forgets it (a 401, a new token, one
// retry); and upstream 503 and 429 answers that outlast the agent's own
// retries, passed on and retried by terway after a backoff.
func TestTerwayTimeline(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC))
	ip := startInProc(t, clk.Now, simulator.Options{HardenedOnly: true}, nil)
	// Upstream recovers while terway backs off: the faults below last until
	// then, past the agent's own retries, so that terway sees them.
	backoffs := 0
	c := &terway{client: ip.srv.Client(), base: ip.srv.URL, now: clk.Now,
		backoff: func(int) { backoffs++; ip.sim.ClearFaults() }}
	mac := simulator.DefaultInstance().NICs[0].MAC
	failing := func(status int) func() {
		return func() { ip.sim.SetFault("/latest/meta-data/network/", simulator.Fault{Status: status}) }
	}
	const md = "/latest/meta-data/"
	nic := md + "network/interfaces/macs/" + mac + "/"
	steps := []struct {
		at           time.Duration
		what         string
		event        func()
		path         string
		wantPUTs     int
		wantBackoffs int
	}{
		{0, "first read", nil, md + "instance-id", 1, 0},
		{time.Hour, "token reused", nil, md + "mac", 1, 0},
		{2 * time.Hour, "token reused", nil, md + "network/interfaces/macs/", 1, 0},
		{179 * time.Minute, "token reused", nil, nic + "vswitch-id", 1, 0},
		{3 * time.Hour, "token three hours old", nil, nic + "gateway", 2, 0},
		{181 * time.Minute, "agent restarted", func() { ip.restart(t) }, md + "zone-id", 3, 0},
		{182 * time.Minute, "upstream failing", failing(503), nic + "netmask", 3, 1},
		{183 * time.Minute, "upstream throttling", failing(429), nic + "private-ipv4s", 3, 2},
	}
	start := clk.Now()
	for _, s := range steps {
		clk.Set(start.Add(s.at))
		if s.event != nil {
			s.event()
		}
		status, got, err := c.get(s.path)
		want, _ := ip.sim.Value(s.path)
		if err != nil || status != http.StatusOK || !bytes.Equal(got, want) {
			t.Errorf("+%v %s: GET %s: %d %q, %v; want 200 %q", s.at, s.what, s.path,
				status, got, err, want)
		}
		if c.puts != s.wantPUTs || backoffs != s.wantBackoffs {
			t.Errorf("+%v %s: %d token PUTs and %d backoffs so far, want %d and %d",
				s.at, s.what, c.puts, backoffs, s.wantPUTs, s.wantBackoffs)
		}
	}
	if st := ip.sim.Stats(); st.TokenPUTs != 2 || st.Forwarded != 0 || st.Unauthorized != 0 {
		t.Errorf("upstream saw %d token PUTs, %d forwarded requests and answered %d 401s; "+
			"want 2 (one per agent), 0 and 0", st.TokenPUTs, st.Forwarded, st.Unauthorized)
	}
}
