package agent

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// Sentinels are values that must appear nowhere but where they belong: the
// upstream token nowhere outside the agent, the credentials only in the
// answer to a credentials path, the query value in no log line.
const (
	sentinelToken    = "SENTINEL-UPSTREAM-TOKEN-7c1e5a"
	sentinelSecret   = "SENTINEL-ACCESS-KEY-SECRET-4b9d02"
	sentinelSTS      = "SENTINEL-SECURITY-TOKEN-e02a77"
	sentinelAudience = "SENTINEL-AUDIENCE-91f3c8"
)

var sentinels = []string{sentinelToken, sentinelSecret, sentinelSTS, sentinelAudience}

// sentinelUpstream is the simulator behind a thin layer that hands the
// agent sentinelToken as its upstream token and writes sentinelSecret and
// sentinelSTS wherever the simulator's credentials appear. Everything
// else, faults included, is the simulator's own. The simulator has no
// hook for fixed secrets, so the layer swaps them on the way.
type sentinelUpstream struct {
	sim *simulator.Server
	url string

	mu       sync.Mutex
	real     string // the simulator's token behind sentinelToken
	sentinel int    // requests that carried sentinelToken
}

func startSentinelUpstream(t testing.TB, opts simulator.Options) *sentinelUpstream {
	t.Helper()
	sim, err := simulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	su := &sentinelUpstream{sim: sim}
	srv := httptest.NewServer(http.HandlerFunc(su.serve))
	t.Cleanup(func() {
		_ = sim.Close() // first: it ends hanging handlers
		srv.Close()
	})
	su.url = srv.URL
	return su
}

func (su *sentinelUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if v := r.Header[tokenHeader]; len(v) == 1 && v[0] == sentinelToken {
		su.mu.Lock()
		r.Header[tokenHeader] = []string{su.real}
		su.sentinel++
		su.mu.Unlock()
	}
	rec := httptest.NewRecorder() // a Drop fault aborts the connection from here
	su.sim.Handler().ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if r.URL.Path == tokenPath && rec.Code == http.StatusOK {
		su.mu.Lock()
		su.real = string(body)
		su.mu.Unlock()
		body = []byte(sentinelToken)
	}
	if c, ok := su.sim.Credentials("EcsRamRoleDemo"); ok {
		body = bytes.ReplaceAll(body, []byte(c.AccessKeySecret), []byte(sentinelSecret))
		body = bytes.ReplaceAll(body, []byte(c.SecurityToken), []byte(sentinelSTS))
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func (su *sentinelUpstream) sentinelUses() int {
	su.mu.Lock()
	defer su.mu.Unlock()
	return su.sentinel
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Sync() error { return nil }

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// debugLogger logs everything, at Debug level and up, as the daemon's
// --log-level debug does, to buf as JSON lines.
func debugLogger(buf *lockedBuffer) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, buf, zap.DebugLevel))
}

// exchange is one consumer request and its answer, as the consumer saw it.
type exchange struct {
	method, path string
	status       int
	text         string // headers and body
}

// redactRig is an agent in front of a sentinelUpstream, behind the server
// Run builds, logging at Debug level into a buffer, with every answer kept.
type redactRig struct {
	clk    *fakeclock.Clock
	up     *sentinelUpstream
	agent  *Agent
	live   *liveServer
	logs   *lockedBuffer
	client *http.Client

	mu      sync.Mutex
	answers []exchange
}

func newRedactRig(t *testing.T, edit func(*Config)) *redactRig {
	t.Helper()
	rr := &redactRig{clk: fakeclock.New(t0), logs: &lockedBuffer{}}
	rr.up = startSentinelUpstream(t, simulator.Options{Now: rr.clk.Now})
	cfg := Defaults()
	cfg.Upstream = rr.up.url
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg, Options{Logger: debugLogger(rr.logs), Now: rr.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	rr.agent = a
	rr.live = serveLikeRun(t, a, 64, nil)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	rr.client = &http.Client{Transport: tr}
	return rr
}

// do sends one request and keeps the answer for checkAnswers.
func (rr *redactRig) do(t *testing.T, method, path string, hdr ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+rr.live.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := rr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var text strings.Builder
	_ = res.Header.Write(&text)
	text.Write(body)
	rr.mu.Lock()
	rr.answers = append(rr.answers, exchange{method, path, res.StatusCode, text.String()})
	rr.mu.Unlock()
	return res.StatusCode, string(body)
}

func (rr *redactRig) metrics(t *testing.T) string {
	t.Helper()
	w := httptest.NewRecorder()
	rr.agent.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "ecs_metadata_agent_") {
		t.Fatalf("/metrics: %d", w.Code)
	}
	return w.Body.String()
}

// credentialsRead matches the paths whose answer is a role's credentials,
// written independently of the agent's own classification.
var credentialsRead = regexp.MustCompile(
	`^/(latest|\d{4}-\d\d-\d\d)/meta-data/ram/security-credentials/[^/?]+\??$`)

// checkNoLeaks: no sentinel in any log line or in /metrics; the upstream
// token in no answer; the credentials only in 200 answers to GETs of a
// credentials path.
func (rr *redactRig) checkNoLeaks(t *testing.T) {
	t.Helper()
	logs, metrics := rr.logs.String(), rr.metrics(t)
	for _, s := range sentinels {
		if strings.Contains(logs, s) {
			t.Errorf("a log line carries %s:\n%s", s, linesWith(logs, s))
		}
		if strings.Contains(metrics, s) {
			t.Errorf("/metrics carries %s", s)
		}
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for _, x := range rr.answers {
		credsOK := x.method == http.MethodGet && x.status == 200 &&
			credentialsRead.MatchString(strings.ToLower(x.path))
		for _, s := range []string{sentinelToken, sentinelSecret, sentinelSTS} {
			if strings.Contains(x.text, s) && (s == sentinelToken || !credsOK) {
				t.Errorf("%s %s answered %d with %s:\n%s", x.method, x.path, x.status, s, x.text)
			}
		}
	}
}

func linesWith(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func mustLog(t *testing.T, logs *lockedBuffer, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if !strings.Contains(logs.String(), `"msg":"`+m+`"`) {
			t.Errorf("no log line %q; the path meant to log it was not taken:\n%s", m, logs)
		}
	}
}

const pkcs7Sentinel = "/latest/dynamic/instance-identity/pkcs7?audience=" + sentinelAudience

// TestSecretsStayWhereTheyBelong pushes the sentinels through every path:
// answers, upstream failures of each kind, a replaced upstream token,
// policy denials, consumer mistakes and throttling.
func TestSecretsStayWhereTheyBelong(t *testing.T) {
	t.Run("answers", func(t *testing.T) {
		rr := newRedactRig(t, nil)
		status, tok := rr.do(t, http.MethodPut, tokenPath, ttlName, "60")
		if status != 200 || tok == sentinelToken {
			t.Fatalf("consumer token PUT: %d %q", status, tok)
		}
		for _, p := range []string{credsPath, "/latest/meta-data/Ram/security-credentials/" +
			"EcsRamRoleDemo", "/2016-01-01/meta-data/ram/security-credentials/EcsRamRoleDemo"} {
			status, body := rr.do(t, http.MethodGet, p, tokenName, tok)
			if status != 200 || !strings.Contains(body, sentinelSecret) ||
				!strings.Contains(body, sentinelSTS) {
				t.Fatalf("GET %s: %d %q, want the sentinel credentials", p, status, body)
			}
		}
		for _, p := range []string{credsPath, credsListing, "/latest/meta-data/instance-id",
			"/latest/meta-data/nosuch", pkcs7Sentinel, "/2016-01-01/meta-data/all"} {
			rr.do(t, http.MethodGet, p)
			rr.do(t, http.MethodHead, p)
		}
		if rr.up.sentinelUses() == 0 {
			t.Fatal("the agent never sent the sentinel token upstream; the test proves nothing")
		}
		rr.checkNoLeaks(t)
	})
	t.Run("upstream failures", func(t *testing.T) {
		rr := newRedactRig(t, func(c *Config) { c.UpstreamTimeout = 200 * time.Millisecond })
		rr.do(t, http.MethodGet, "/latest/meta-data/instance-id") // holds a token
		for _, f := range []simulator.Fault{{Status: 503}, {Status: 429}, {Drop: true}, {Hang: true}} {
			rr.up.sim.SetFault("/latest/meta-data/ram/", f)
			rr.up.sim.SetFault("/latest/dynamic/", f)
			for _, p := range []string{credsPath, pkcs7Sentinel} {
				if status, _ := rr.do(t, http.MethodGet, p); status < 429 {
					t.Errorf("GET %s under %+v: %d, want an error", p, f, status)
				}
			}
		}
		rr.up.sim.ClearFaults()
		rr.up.sim.RevokeTokens()
		rr.do(t, http.MethodGet, credsPath)
		rr.up.sim.RevokeTokens()
		rr.up.sim.SetFault(tokenPath, simulator.Fault{Status: 500})
		rr.do(t, http.MethodGet, "/latest/meta-data/zone-id")
		mustLog(t, rr.logs, "upstream degraded", "upstream throttled or failing, retrying",
			"upstream token refused, fetching a new one")
		rr.checkNoLeaks(t)
	})
	t.Run("stale credentials served while upstream fails", func(t *testing.T) {
		rr := newRedactRig(t, nil)
		rr.do(t, http.MethodGet, credsPath)
		rr.clk.Advance(5*time.Hour + 50*time.Minute) // inside the refresh window
		rr.up.sim.SetFault("/latest/meta-data/ram/", simulator.Fault{Status: 500})
		rr.do(t, http.MethodGet, credsPath)
		for _, c := range rr.agent.prefetch() {
			<-c.done
		}
		rr.checkNoLeaks(t)
	})
	t.Run("policy denial", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "policy")
		_ = os.WriteFile(file, []byte("deny any /latest/meta-data/ram/\n"), 0o600)
		rr := newRedactRig(t, func(c *Config) { c.PolicyFile = file })
		for _, p := range []string{credsPath, credsListing, credsPath + "?" + sentinelAudience} {
			if status, _ := rr.do(t, http.MethodGet, p); status != 403 {
				t.Errorf("GET %s: %d, want 403", p, status)
			}
		}
		mustLog(t, rr.logs, "denied by policy")
		rr.checkNoLeaks(t)
	})
	t.Run("consumer mistakes", func(t *testing.T) {
		rr := newRedactRig(t, func(c *Config) { c.ConsumerRate, c.ConsumerBurst = 1, 1 })
		rr.do(t, http.MethodGet, credsPath)
		rr.do(t, http.MethodGet, credsPath, tokenName, sentinelToken)
		rr.do(t, http.MethodGet, credsPath, tokenName, "forged")
		rr.do(t, http.MethodPut, tokenPath, ttlName, "0")
		rr.do(t, http.MethodPut, tokenPath, ttlName, "60", "X-Forwarded-For", "10.0.0.1")
		rr.do(t, http.MethodPost, credsPath)
		rr.do(t, http.MethodGet, "/latest/meta-data/nosuch-1?"+sentinelAudience)
		if s, _ := rr.do(t, http.MethodGet, "/latest/meta-data/nosuch-2?"+sentinelAudience); s != 429 {
			t.Errorf("second uncached read at burst 1: %d, want 429", s)
		}
		mustLog(t, rr.logs, "consumer throttled")
		rr.checkNoLeaks(t)
	})
}
