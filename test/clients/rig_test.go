package clients

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/agent"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// role is the RAM role of the simulator's default instance.
const role = "EcsRamRoleDemo"

const credentialsPath = "/latest/meta-data/ram/security-credentials/" + role

// shiftedClock reads real time plus an offset that only moves forward. The
// agent and the simulator read it, while the SDKs judge expiry by
// time.Now: a test can send the first hours ahead and still have the SDKs
// agree on what is about to expire. It is safe for concurrent use.
type shiftedClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func newShiftedClock(offset time.Duration) *shiftedClock {
	return &shiftedClock{offset: offset}
}

// Now returns real time plus the offset.
func (c *shiftedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Set moves the clock forward so that it reads t now; it never moves back.
func (c *shiftedClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = max(c.offset, time.Until(t))
}

// inproc is an agent built with agent.New and served by httptest in front
// of a simulator, both reading the clock the test gives. A tap records
// every answer the agent makes.
type inproc struct {
	now   func() time.Time
	edit  func(*agent.Config) // nil: the defaults
	sim   *simulator.Server
	srv   *httptest.Server
	tap   *tap
	agent atomic.Pointer[agent.Agent]
}

// startInProc starts a simulator with opts and an agent in front of it,
// both on now; edit, when not nil, changes the agent's configuration.
func startInProc(t *testing.T, now func() time.Time, opts simulator.Options,
	edit func(*agent.Config)) *inproc {
	t.Helper()
	opts.Now = now
	sim, err := simulator.Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	ip := &inproc{now: now, sim: sim, edit: edit}
	ip.restart(t)
	ip.tap = &tap{now: now, next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip.agent.Load().ServeHTTP(w, r)
	})}
	ip.srv = httptest.NewServer(ip.tap)
	t.Cleanup(ip.srv.Close)
	return ip
}

// addr is the agent's HOST:PORT.
func (ip *inproc) addr() string { return ip.srv.Listener.Addr().String() }

// restart replaces the agent with a new one in front of the same
// simulator, as when the daemon restarts: the tokens consumers hold are
// forgotten. It returns once the new agent holds its upstream token.
func (ip *inproc) restart(t *testing.T) {
	t.Helper()
	cfg := agent.Defaults()
	cfg.Upstream = ip.sim.URL()
	if ip.edit != nil {
		ip.edit(&cfg)
	}
	a, err := agent.New(cfg, agent.Options{Now: ip.now})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	a.Start(func() { close(ready) })
	t.Cleanup(a.Close)
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("in-process agent not ready within 10 s")
	}
	if old := ip.agent.Swap(a); old != nil {
		old.Close()
	}
}

// metrics reads the agent's /metrics.
func (ip *inproc) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	ip.agent.Load().AdminHandler().ServeHTTP(rec, req)
	return parseMetrics(t, rec.Body)
}

// scrape reads /metrics from the built agent's admin listener.
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).
		Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	return parseMetrics(t, res.Body)
}

// parseMetrics reads the Prometheus text format into "name{labels}" ->
// value, keeping only the agent's own series.
func parseMetrics(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ecs_metadata_agent_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[strings.TrimPrefix(line[:i], "ecs_metadata_agent_")] = v
	}
	return m
}

// checkTokenUse fails unless upstream saw one token PUT, the built agent's
// own at start, and the agent issued want tokens to its consumers.
func checkTokenUse(t *testing.T, sim *simulator.Server, m map[string]float64, want int) {
	t.Helper()
	st := sim.Stats()
	if own := m[`token_refreshes_total{result="ok"}`]; st.TokenPUTs != 1 || own != 1 {
		t.Errorf("upstream saw %d token PUTs, the agent counts %v of its own; want 1 and 1: "+
			"consumer PUTs reached upstream", st.TokenPUTs, own)
	}
	if got := m["consumer_tokens_issued_total"]; got != float64(want) {
		t.Errorf("agent issued %v tokens to consumers, want %d (one per client PUT)", got, want)
	}
	if st.Forwarded != 0 {
		t.Errorf("upstream saw %d requests with forwarding headers, want 0", st.Forwarded)
	}
}

// tap passes requests to next and records each answer with the clock's
// reading when it was made, the way a packet capture would.
type tap struct {
	now  func() time.Time
	next http.Handler

	mu   sync.Mutex
	seen []exchange
}

// exchange is one answer the agent made.
type exchange struct {
	at     time.Time
	path   string
	status int
	body   []byte
}

func (tp *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	tp.next.ServeHTTP(rec, r)
	e := exchange{at: tp.now(), path: r.URL.Path, status: rec.status, body: rec.body.Bytes()}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.seen = append(tp.seen, e)
}

// exchanges returns what was recorded so far.
func (tp *tap) exchanges() []exchange {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]exchange(nil), tp.seen...)
}

// recorder copies the status and body on their way to the client.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// roundTrip sends req with client and returns the status and the whole
// body, as the test clients read every answer.
func roundTrip(client *http.Client, req *http.Request) (int, []byte, error) {
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}
