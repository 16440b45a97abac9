package simulator_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is where every fake clock starts.
var t0 = time.Date(2026, 12, 4, 16, 9, 0, 0, time.UTC)

const (
	role     = "EcsRamRoleDemo"
	mac0     = "00:16:3e:0c:5a:7e"
	mac1     = "00:16:3e:21:9b:d4"
	md       = "/latest/meta-data/"
	credPath = md + "ram/security-credentials/" + role
)

// env is a simulator listening on loopback, a fake clock driving it and a
// client that never follows redirects.
type env struct {
	t     *testing.T
	sim   *simulator.Server
	clock *fakeclock.Clock
	hc    *http.Client
}

func start(t *testing.T, opts simulator.Options) *env {
	t.Helper()
	clock := fakeclock.New(t0)
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	sim, err := simulator.Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := sim.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	hc := &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return &env{t: t, sim: sim, clock: clock, hc: hc}
}

// reply is an answer read in full.
type reply struct {
	status int
	header http.Header
	body   string
}

// do sends method path (sent as written: raw query, dots and escapes
// kept) with headers given as name, value pairs; a name may repeat.
func (e *env) do(method, path string, headers ...string) reply {
	e.t.Helper()
	r, err := e.send(context.Background(), method, path, headers...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (e *env) send(ctx context.Context, method, path string, headers ...string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.sim.URL()+path, nil)
	if err != nil {
		return reply{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

func (e *env) get(path string, headers ...string) reply {
	e.t.Helper()
	return e.do(http.MethodGet, path, headers...)
}

// token issues a token with the given TTL in seconds.
func (e *env) token(ttl string) string {
	e.t.Helper()
	r := e.do(http.MethodPut, "/latest/api/token",
		"X-aliyun-ecs-metadata-token-ttl-seconds", ttl)
	if r.status != http.StatusOK {
		e.t.Fatalf("token PUT: status %d, body %q", r.status, r.body)
	}
	return r.body
}

// want200 fails unless r is a 200 with body want.
func want200(t *testing.T, what string, r reply, want string) {
	t.Helper()
	if r.status != http.StatusOK || r.body != want {
		t.Errorf("%s: got %d %q, want 200 %q", what, r.status, r.body, want)
	}
}

// waitFor polls cond until true, for events in other goroutines (not for
// time logic, which the fake clock drives).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// crawl returns every leaf path below dir (ending in "/") by following
// listings through Value.
func crawl(t *testing.T, sim *simulator.Server, dir string) []string {
	t.Helper()
	b, ok := sim.Value(dir)
	if !ok {
		t.Fatalf("no listing at %s", dir)
	}
	var leaves []string
	for _, name := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(name, "/") {
			leaves = append(leaves, crawl(t, sim, dir+name)...)
			continue
		}
		leaves = append(leaves, dir+name)
	}
	return leaves
}
