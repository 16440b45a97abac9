// Package soak runs the built agent under a bounded load on loopback,
// with upstream faults injected, and checks that every answer is one the
// faults explain, that the agent's goroutines return to their baseline and
// that its resident memory stays flat.
package soak

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

func TestMain(m *testing.M) {
	code := testbin.Main(m)
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

// The load's shape. Everything stops by itself once loadFor has passed.
const (
	loadFor     = 20 * time.Second
	warmUpFor   = 5 * time.Second // RSS is compared with its value after this
	connsAtOnce = 256
	maxPerConn  = 20 // requests on one keep-alive connection
	ioTimeout   = 10 * time.Second
)

// Paths by what the simulator does to them during the load.
const (
	creds        = "/latest/meta-data/ram/security-credentials/EcsRamRoleDemo"
	pathFailing  = "/latest/meta-data/image-id"                       // 503
	pathThrottle = "/latest/meta-data/vpc-id"                         // 429
	pathDropped  = "/latest/meta-data/hostname"                       // connection dropped
	pathSlow     = "/latest/meta-data/instance/spot/termination-time" // 30ms, never cached
	pathFlapping = "/latest/meta-data/network/interfaces/macs/"       // dropped every other second
	pkcs7        = "/latest/dynamic/instance-identity/pkcs7?audience="
)

var hits = []string{
	"/latest/meta-data/instance-id", "/latest/meta-data/region-id", "/latest/meta-data/zone-id",
	"/latest/meta-data/ram/security-credentials/", "/latest/dynamic/instance-identity/document",
	"/latest/meta-data/", "/latest/user-data", "/2016-01-01/meta-data/all",
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the soak run under -short: it takes about 25 seconds")
	}
	s := startSoak(t)
	s.injectFaults()
	base := s.settledCore(t, -1)
	stopFlap := s.flap()
	res := s.load(t)
	stopFlap()
	t.Logf("%d consumers, %d requests (%d over the Unix socket), %d answers explained by "+
		"faults; RSS %d KiB after warm-up, %d KiB at the end",
		res.consumers, res.requests.Load(), res.unix.Load(), res.faulted.Load(),
		res.rssWarm, res.rssEnd)
	for _, e := range res.errors() {
		t.Error(e)
	}
	if res.consumers < 1000 {
		t.Errorf("only %d consumers ran; the soak is meant to have thousands", res.consumers)
	}
	if res.rssWarm == 0 || float64(res.rssEnd) > 1.5*float64(res.rssWarm) {
		t.Errorf("RSS grew from %d KiB after warm-up to %d KiB, want at most 1.5x",
			res.rssWarm, res.rssEnd)
	}
	s.sim.ClearFaults()
	end := s.settledCore(t, base)
	t.Logf("agent goroutines less two per upstream connection: %d before, %d after", base, end)
	s.checkLog(t)
}

// soak is the built agent in front of a simulator whose upstream
// connections are counted, so that the agent's idle upstream connections
// (two goroutines each in net/http) can be told from a leak.
type soak struct {
	agent *testbin.Agent
	sim   *simulator.Server
	up    *countingListener
	pkcs7 map[string]string // expected signature by audience
}

func startSoak(t *testing.T) *soak {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &countingListener{Listener: ln}
	sim, err := simulator.Serve(up, simulator.Options{})
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	a := testbin.StartAgentFor(t, sim,
		"--consumer-rate", "0", "--upstream-rate", "10000", "--upstream-burst", "10000",
		"--not-found-ttl", "0", "--upstream-timeout", "1s")
	s := &soak{agent: a, sim: sim, up: up, pkcs7: map[string]string{}}
	s.expectPKCS7(t)
	return s
}

// expectPKCS7 reads the signature for each audience the load uses
// straight from the simulator.
func (s *soak) expectPKCS7(t *testing.T) {
	t.Helper()
	for i := range 50 {
		aud := "aud-" + strconv.Itoa(i)
		res, err := http.Get("http://" + s.up.Addr().String() + pkcs7 + aud)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		s.pkcs7[aud] = string(body)
	}
	http.DefaultClient.CloseIdleConnections()
}

func (s *soak) injectFaults() {
	s.sim.SetFault(pathFailing, simulator.Fault{Status: 503})
	s.sim.SetFault(pathThrottle, simulator.Fault{Status: 429})
	s.sim.SetFault(pathDropped, simulator.Fault{Drop: true})
	s.sim.SetFault(pathSlow, simulator.Fault{Latency: 30 * time.Millisecond})
}

// flap drops the connections of pathFlapping's reads every other second
// until the returned func is called.
func (s *soak) flap() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for on := true; ; on = !on {
			f := simulator.Fault{}
			if on {
				f.Drop = true
			}
			s.sim.SetFault(pathFlapping, f)
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// settledCore waits until the agent's goroutines, less two for each open
// upstream connection, hold steady for three readings in a row, and
// returns that count. With want >= 0 it waits for the count to come down
// to want (plus 2 for timers and scrapes in flight) and fails if it does
// not within 15 s.
func (s *soak) settledCore(t *testing.T, want int) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last, same := -1, 0
	for time.Now().Before(deadline) {
		core := s.goroutines(t) - 2*int(s.up.open.Load())
		switch {
		case want < 0 && core == last:
			same++
		case want >= 0 && core <= want+2:
			same++
		default:
			same = 0
		}
		if same >= 2 {
			return core
		}
		last = core
		time.Sleep(200 * time.Millisecond) // polls another process
	}
	t.Errorf("agent goroutines (less upstream connections) at %d, want them back to %d; "+
		"%d upstream connections open", last, want, s.up.open.Load())
	return last
}

var goroutinesLine = regexp.MustCompile(`(?m)^go_goroutines (\d+)$`)

func (s *soak) goroutines(t *testing.T) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: ioTimeout}
	res, err := c.Get("http://" + s.agent.Admin + "/metrics")
	if err != nil {
		t.Fatalf("scraping the agent: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := goroutinesLine.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no go_goroutines in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// checkLog: the agent logged no error and nothing that is not JSON (a
// panic or a runtime message).
func (s *soak) checkLog(t *testing.T) {
	t.Helper()
	for _, l := range s.agent.Proc.Lines() {
		msg, _ := l["msg"].(string)
		if l["level"] == "error" || strings.HasPrefix(msg, "(not json)") {
			t.Errorf("agent logged: %v", l)
		}
	}
}

// countingListener counts the connections it accepted that are still open.
type countingListener struct {
	net.Listener
	open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// result is what the load saw. Unexpected answers are kept, a few of each
// kind, for the failure message.
type result struct {
	consumers       int
	requests        atomic.Int64
	unix            atomic.Int64
	faulted         atomic.Int64
	rssWarm, rssEnd int
	mu              sync.Mutex
	unexpected      map[string]int
	examples        []string
}

func (r *result) fail(kind, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unexpected == nil {
		r.unexpected = map[string]int{}
	}
	if r.unexpected[kind]++; r.unexpected[kind] <= 3 {
		r.examples = append(r.examples, kind+": "+detail)
	}
}

func (r *result) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k, n := range r.unexpected {
		out = append(out, fmt.Sprintf("%d unexpected: %s", n, k))
	}
	return append(out, r.examples...)
}

// load runs consumers, connsAtOnce at a time, until loadFor has passed,
// sampling the agent's RSS each second.
func (s *soak) load(t *testing.T) *result {
	t.Helper()
	res := &result{}
	start := time.Now()
	stopAt := start.Add(loadFor)
	slots := make(chan struct{}, connsAtOnce)
	var wg sync.WaitGroup
	nextSample := start.Add(time.Second)
	for time.Now().Before(stopAt) {
		slots <- struct{}{}
		if now := time.Now(); now.After(nextSample) {
			rss := s.rss(t)
			if now.Sub(start) < warmUpFor+time.Second {
				res.rssWarm = rss
			}
			res.rssEnd = rss
			nextSample = now.Add(time.Second)
		}
		res.consumers++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.consumer(res, stopAt)
		}()
	}
	wg.Wait()
	res.rssEnd = s.rss(t)
	return res
}

// rss reads the agent's resident set size in KiB.
func (s *soak) rss(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.agent.Proc.Cmd.Process.Pid))
	if err != nil {
		t.Fatalf("agent gone? %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// consumer opens one connection, over TCP or the Unix socket, and sends
// up to maxPerConn requests on it.
func (s *soak) consumer(res *result, stopAt time.Time) {
	network, addr := "tcp", s.agent.TCP
	if rand.IntN(3) == 0 {
		network, addr = "unix", s.agent.Sock
	}
	c, err := net.DialTimeout(network, addr, ioTimeout)
	if err != nil {
		res.fail("dial "+network, err.Error())
		return
	}
	defer c.Close()
	cc := &consumerConn{c: c, br: bufio.NewReader(c)}
	for n := 1 + rand.IntN(maxPerConn); n > 0 && time.Now().Before(stopAt); n-- {
		if network == "unix" {
			res.unix.Add(1)
		}
		if !s.oneRequest(cc, res) {
			return // the connection is no longer usable
		}
	}
}

type consumerConn struct {
	c  net.Conn
	br *bufio.Reader
}

// do sends one request and reads its answer.
func (cc *consumerConn) do(method, target string, hdr ...string) (int, string, error) {
	req := method + " " + target + " HTTP/1.1\r\nHost: 100.100.100.200\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	_ = cc.c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(cc.c, req+"\r\n"); err != nil {
		return 0, "", err
	}
	r, err := http.ReadResponse(cc.br, &http.Request{Method: method})
	if err != nil {
		return 0, "", err
	}
	defer r.Body.Close()
	body, err := io.ReadAll(r.Body)
	return r.StatusCode, string(body), err
}

// oneRequest sends one request of the mix and checks its answer; false
// means a transport error.
func (s *soak) oneRequest(cc *consumerConn, res *result) bool {
	res.requests.Add(1)
	switch k := rand.IntN(20); {
	case k < 10:
		return s.expectValue(cc, res, hits[rand.IntN(len(hits))])
	case k < 12:
		return s.expectCredentials(cc, res)
	case k < 14:
		return s.expectStatus(cc, res, "/latest/meta-data/nosuch-"+strconv.Itoa(rand.IntN(500)),
			nil, 404)
	case k < 15:
		return s.expectStatus(cc, res, pathSlow, nil, 404)
	case k < 16:
		aud := "aud-" + strconv.Itoa(rand.IntN(len(s.pkcs7)))
		return s.expectBody(cc, res, pkcs7+aud, s.pkcs7[aud], nil)
	case k < 18:
		return s.tokenFlow(cc, res)
	default:
		faulted := []string{pathFailing, pathThrottle, pathDropped, pathFlapping}
		return s.expectFaulted(cc, res, faulted[rand.IntN(len(faulted))])
	}
}

func (s *soak) expectValue(cc *consumerConn, res *result, path string) bool {
	want, ok := s.sim.Value(path)
	if !ok {
		res.fail("test setup", "no simulator value for "+path)
		return false
	}
	return s.expectBody(cc, res, path, string(want), nil)
}

func (s *soak) expectBody(cc *consumerConn, res *result, path, want string, hdr []string) bool {
	status, body, err := cc.do(http.MethodGet, path, hdr...)
	switch {
	case err != nil:
		res.fail("transport error on a healthy path", path+": "+err.Error())
		return false
	case status != 200:
		res.fail("status on a healthy path", fmt.Sprintf("%s: %d %q", path, status, body))
	case body != want:
		res.fail("wrong body", fmt.Sprintf("%s: %q, want %q", path, trim(body), trim(want)))
	}
	return true
}

func (s *soak) expectStatus(cc *consumerConn, res *result, path string, hdr []string,
	want int) bool {
	status, body, err := cc.do(http.MethodGet, path, hdr...)
	switch {
	case err != nil:
		res.fail("transport error on a healthy path", path+": "+err.Error())
		return false
	case status != want:
		res.fail("status on a healthy path", fmt.Sprintf("%s: %d %q, want %d", path, status,
			trim(body), want))
	}
	return true
}

func (s *soak) expectCredentials(cc *consumerConn, res *result) bool {
	c, _ := s.sim.Credentials("EcsRamRoleDemo")
	status, body, err := cc.do(http.MethodGet, creds)
	switch {
	case err != nil:
		res.fail("transport error on a healthy path", creds+": "+err.Error())
		return false
	case status != 200 || !strings.Contains(body, `"AccessKeyId" : "`+c.AccessKeyId+`"`):
		res.fail("credentials", fmt.Sprintf("%d %q", status, trim(body)))
	}
	return true
}

// tokenFlow PUTs for a consumer token and reads with it.
func (s *soak) tokenFlow(cc *consumerConn, res *result) bool {
	status, tok, err := cc.do(http.MethodPut, "/latest/api/token",
		"X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
	switch {
	case err != nil:
		res.fail("transport error on a token PUT", err.Error())
		return false
	case status != 200 || len(tok) != 43:
		res.fail("token PUT", fmt.Sprintf("%d %q", status, trim(tok)))
		return true
	}
	want, _ := s.sim.Value("/latest/meta-data/instance-id")
	return s.expectBody(cc, res, "/latest/meta-data/instance-id", string(want),
		[]string{"X-aliyun-ecs-metadata-token", tok})
}

// expectFaulted accepts the failures the faults explain, or, where the
// value may be cached or the fault is off, the right value.
func (s *soak) expectFaulted(cc *consumerConn, res *result, path string) bool {
	status, body, err := cc.do(http.MethodGet, path)
	if err != nil {
		res.fail("transport error to the agent on a faulted path", path+": "+err.Error())
		return false
	}
	want, _ := s.sim.Value(path)
	switch {
	case status == 502 || status == 503 || status == 429:
		res.faulted.Add(1)
	case status == 200 && path == pathFlapping && body == string(want):
	default:
		res.fail("answer on a faulted path", fmt.Sprintf("%s: %d %q", path, status, trim(body)))
	}
	return true
}

func trim(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
