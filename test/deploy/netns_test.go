package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The stand-in for 100.100.100.200 and the addresses the agent uses inside
// the test's own network namespace. Nothing here is reachable outside it.
const (
	standInAddr = "192.0.2.200"
	agentListen = "127.0.0.1:8998"
	agentAdmin  = "127.0.0.1:8999"
	agentUID    = 65534 // nobody: the exempt user
	probePath   = "/latest/meta-data/deploy-probe"
	probeValue  = "probe-ok"
	probeHeader = "X-Deploy-Probe"
	inNetnsEnv  = "ECS_DEPLOY_IN_NETNS"
	nftTable    = "ecs_metadata_agent"
)

// TestInterception loads the intercept script's rules in a network
// namespace of its own, with a fake metadata service on a stand-in
// address, and checks that a local consumer is answered by the agent while
// the agent's own upstream requests pass untouched, and that remove
// leaves nothing behind.
func TestInterception(t *testing.T) {
	if inNetns(t) {
		interceptInNetns(t)
	}
}

// inNetns reports whether the calling test runs inside its own network
// namespace. If not, it re-runs that test there, in a copy of the test
// binary started with CLONE_NEWNET, and reports that copy's result: every
// address, link and nft table the test creates dies with that process, and
// the host's network is never touched.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inNetnsEnv) == t.Name() {
		return true
	}
	requireRoot(t, "create a network namespace and load nftables rules")
	requireTool(t, "nft", "nftables")
	requireTool(t, "ip", "iproute2")
	requireTool(t, "sh", "dash")
	agent := agentBinary(t)
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v",
		"-test.count=1", "-test.timeout=5m")
	cmd.Env = append(cleanEnv(), inNetnsEnv+"="+t.Name(), agentPathEnv+"="+agent)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in the test's network namespace: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "--- SKIP: "+t.Name()) {
		t.Skipf("skipping in the test's network namespace:\n%s", out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not pass in its network namespace:\n%s", out)
	}
	t.Logf("in the test's network namespace:\n%s", out)
	return false
}

// interceptInNetns is the body of TestInterception, run as root inside the
// new network namespace.
func interceptInNetns(t *testing.T) {
	requirePrivateNetns(t)
	bringUpStandIn(t)
	mock := startMock(t, net.JoinHostPort(standInAddr, "80"))
	agent := startAgentAs(t, agentUID, agentListen)
	waitReady(t, agent)

	t.Run("install is idempotent", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			intercept(t, vmEnv, "install")
		}
		if n := strings.Count(nftTableText(t), "dnat to"); n != 1 {
			t.Fatalf("after two installs the table has %d dnat rules, want 1", n)
		}
	})
	t.Run("consumer is answered by the agent", func(t *testing.T) {
		mock.reset()
		if code, body := consumerGet(t); code != 200 || body != probeValue {
			t.Fatalf("consumer got %d %q, want 200 %q", code, body, probeValue)
		}
		checkIntercepted(t, mock, true)
	})
	t.Run("remove leaves nothing", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			intercept(t, vmEnv, "remove")
		}
		out := run(t, "nft", "list", "ruleset")
		if strings.TrimSpace(out) != "" {
			t.Fatalf("ruleset after remove:\n%s", out)
		}
		mock.reset()
		if code, _ := consumerGet(t); code != 200 || mock.consumerRequests() != 1 {
			t.Fatalf("after remove the consumer did not reach the service directly: %v",
				mock.log())
		}
	})
	if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := agent.wait(30 * time.Second); err != nil {
		t.Errorf("agent after SIGTERM: %v, want exit status 0", err)
	}
}

// checkIntercepted checks where the consumer's request went: to the agent
// (the mock never saw the consumer's header), and from the agent upstream
// unredirected (the mock saw the agent ask for the path; a redirected
// agent would have asked itself). With output, it also checks the counters
// of the output chain's rules.
func checkIntercepted(t *testing.T, mock *metadataMock, output bool) {
	t.Helper()
	if n := mock.consumerRequests(); n != 0 {
		t.Errorf("the consumer reached the service directly %d times: %v", n, mock.log())
	}
	if !mock.saw(probePath) {
		t.Errorf("the agent's request for %s never reached the service: %v",
			probePath, mock.log())
	}
	if !output {
		return
	}
	table := nftTableText(t)
	for _, rule := range []string{"meta skuid " + strconv.Itoa(agentUID), "dnat to"} {
		if n := ruleCounter(t, table, rule); n == 0 {
			t.Errorf("rule %q matched no packet:\n%s", rule, table)
		}
	}
}

// requirePrivateNetns refuses to go on unless this process is in a fresh
// network namespace: only a loopback link, and no address on it yet.
func requirePrivateNetns(t *testing.T) {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Flags&net.FlagLoopback == 0 || ifs[0].Flags&net.FlagUp != 0 {
		t.Fatalf("not in a fresh network namespace (links %v): refusing to change it", ifs)
	}
}

// bringUpStandIn puts the stand-in address on a dummy link, or on lo where
// the kernel has no dummy links, so that connections to it stay local. It
// reports whether dummy links work.
func bringUpStandIn(t *testing.T) bool {
	t.Helper()
	run(t, "ip", "link", "set", "lo", "up")
	if err := exec.Command("ip", "link", "add", "ecsmd0", "type", "dummy").Run(); err != nil {
		t.Logf("no dummy link (%v): %s goes on lo", err, standInAddr)
		run(t, "ip", "addr", "add", standInAddr+"/32", "dev", "lo")
		return false
	}
	run(t, "ip", "addr", "add", standInAddr+"/32", "dev", "ecsmd0")
	run(t, "ip", "link", "set", "ecsmd0", "up")
	return true
}

// run runs a command and returns its output, failing the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// vmEnv is the intercept script's settings for the VM case: the stand-in
// address to the agent's loopback listener, its uid exempt.
var vmEnv = []string{
	"ECS_METADATA_INTERCEPT_ADDR=" + standInAddr,
	"ECS_METADATA_INTERCEPT_TO=" + agentListen,
	"ECS_METADATA_INTERCEPT_EXEMPT_USER=" + strconv.Itoa(agentUID),
}

// intercept runs the script with settings env and fails the test if it
// fails.
func intercept(t *testing.T, env []string, command string) {
	t.Helper()
	if _, errOut, code := runScript(t, env, command); code != 0 {
		t.Fatalf("ecs-metadata-intercept %s: exit %d: %s", command, code, errOut)
	}
}

// nftTableText lists the script's table, counters included.
func nftTableText(t *testing.T) string {
	t.Helper()
	return run(t, "nft", "list", "table", "ip", nftTable)
}

// ruleCounter is the packet count of the rule containing text.
func ruleCounter(t *testing.T, table, text string) int {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(text) + `.*counter packets (\d+)|` +
		`counter packets (\d+).*` + regexp.QuoteMeta(text))
	m := re.FindStringSubmatch(table)
	if m == nil {
		t.Fatalf("no counted rule with %q in:\n%s", text, table)
	}
	n, _ := strconv.Atoi(m[1] + m[2])
	return n
}

// startAgentAs runs the built agent under uid against the mock.
func startAgentAs(t *testing.T, uid uint32, listen string) *proc {
	t.Helper()
	cmd := exec.Command(agentBinary(t),
		"--upstream", "http://"+standInAddr,
		"--listen", listen, "--admin-listen", agentAdmin,
		"--log-format", "console", "--log-level", "debug")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: uid},
	}
	return startProc(t, "agent", cmd)
}

// waitReady polls the agent's /readyz until it answers 200.
func waitReady(t *testing.T, agent *proc) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: directTransport()}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + agentAdmin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-agent.done:
			t.Fatalf("agent exited before it was ready: %v", agent.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("agent not ready within 60s")
}

// directTransport ignores proxy settings and keeps no connections.
func directTransport() *http.Transport {
	return &http.Transport{Proxy: nil, DisableKeepAlives: true}
}

// consumerGet asks the stand-in address for the probe path, as an SDK
// would ask 100.100.100.200, and returns the status and body.
func consumerGet(t *testing.T) (int, string) {
	t.Helper()
	code, body, err := probeGet()
	if err != nil {
		t.Fatalf("consumer GET: %v", err)
	}
	return code, body
}

// probeGet sends the consumer's request: GET the probe path from the
// stand-in address, carrying the header that tells the mock it came
// straight from the consumer.
func probeGet() (int, string, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: directTransport()}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet,
		"http://"+standInAddr+probePath, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set(probeHeader, "consumer")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// metadataMock is a fake metadata service that records what reaches it.
type metadataMock struct {
	mu       sync.Mutex
	requests []string // "METHOD PATH" plus " consumer" if the probe header came
}

// startMock serves a minimal metadata tree on addr until the test ends.
func startMock(t *testing.T, addr string) *metadataMock {
	t.Helper()
	m := &metadataMock{}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("mock listen %s: %v", addr, err)
	}
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return m
}

var mockValues = map[string]string{
	"/latest/meta-data/instance-id": "i-deploytest0001",
	"/latest/meta-data/region-id":   "cn-test",
	"/latest/meta-data/zone-id":     "cn-test-a",
	probePath:                       probeValue,
}

// ServeHTTP records the request and answers it from mockValues.
func (m *metadataMock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	entry := r.Method + " " + r.URL.Path
	if r.Header.Get(probeHeader) != "" {
		entry += " consumer"
	}
	m.mu.Lock()
	m.requests = append(m.requests, entry)
	m.mu.Unlock()
	switch v, ok := mockValues[r.URL.Path]; {
	case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
		fmt.Fprint(w, "deploy-test-token")
	case ok && r.Method == http.MethodGet:
		fmt.Fprint(w, v)
	default:
		http.NotFound(w, r)
	}
}

// reset forgets the requests seen so far.
func (m *metadataMock) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = nil
}

// log returns the requests seen so far.
func (m *metadataMock) log() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.requests...)
}

// consumerRequests counts requests that carried the consumer's header.
func (m *metadataMock) consumerRequests() int {
	n := 0
	for _, r := range m.log() {
		if strings.HasSuffix(r, " consumer") {
			n++
		}
	}
	return n
}

// saw reports whether a GET for path arrived without the consumer's header.
func (m *metadataMock) saw(path string) bool {
	for _, r := range m.log() {
		if r == "GET "+path {
			return true
		}
	}
	return false
}
