package clients

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

// cloudInitRoot is the versioned tree cloud-init reads.
const cloudInitRoot = "/2016-01-01/meta-data/"

// cloudInit reads metadata the way cloud-init's Aliyun data source does in
// token mode: a token PUT, then meta-data/all, and when that is missing a
// walk of the listings that skips security-credentials. A failed read is
// retried; a 401 first gets a new token.
type cloudInit struct {
	client  *http.Client
	base    string              // scheme and host the requests name
	pause   func(time.Duration) // waits before a retry; nil: no wait
	token   string
	retries int // reads retried so far
}

// cloudInitRetries is how often cloud-init retries a failed read, a second
// apart (its readurl with retries=5, sec_between=1).
const cloudInitRetries = 5

// newToken PUTs for a token as cloud-init does, with a 6-hour TTL.
func (c *cloudInit) newToken() error {
	req, err := http.NewRequest(http.MethodPut, c.base+"/latest/api/token", nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
	status, body, err := roundTrip(c.client, req)
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("token PUT: %d %q, %v", status, body, err)
	}
	c.token = string(body)
	return nil
}

// get reads path with the token, retrying 401, 429 and 5xx answers.
func (c *cloudInit) get(path string) (int, []byte, error) {
	for try := 0; ; try++ {
		status, body, err := c.read(path)
		if err != nil || !retried(status) || try == cloudInitRetries {
			return status, body, err
		}
		if status == http.StatusUnauthorized {
			if err := c.newToken(); err != nil {
				return 0, nil, err
			}
		}
		c.retries++
		if c.pause != nil {
			c.pause(time.Second)
		}
	}
}

func retried(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusTooManyRequests ||
		status >= 500
}

func (c *cloudInit) read(path string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-aliyun-ecs-metadata-token", c.token)
	return roundTrip(c.client, req)
}

// readFunc answers a GET of path.
type readFunc func(path string) (int, []byte, error)

// walk reads every entry below dir, which ends in "/", into seen, as
// cloud-init does when meta-data/all is missing: listings name one entry a
// line, directories end in "/", and security-credentials is skipped.
// Listings are kept too, under their path with its trailing "/".
func walk(read readFunc, dir string, seen map[string][]byte) error {
	status, body, err := read(dir)
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("listing %s: %d, %v", dir, status, err)
	}
	seen[dir] = body
	for name := range strings.SplitSeq(string(body), "\n") {
		switch {
		case name == "" || strings.TrimSuffix(name, "/") == "security-credentials":
		case strings.HasSuffix(name, "/"):
			if err := walk(read, dir+name, seen); err != nil {
				return err
			}
		default:
			status, v, err := read(dir + name)
			if err != nil || status != http.StatusOK {
				return fmt.Errorf("leaf %s: %d, %v", dir+name, status, err)
			}
			seen[dir+name] = v
		}
	}
	return nil
}

// simRead answers from the simulator's own values: the reference walk.
func simRead(sim *simulator.Server) readFunc {
	return func(path string) (int, []byte, error) {
		if v, ok := sim.Value(path); ok {
			return http.StatusOK, v, nil
		}
		return http.StatusNotFound, nil, nil
	}
}

// cloudInitOver returns a cloud-init client reaching the agent over one of
// its consumer surfaces.
func cloudInitOver(t *testing.T, surface string, a *testbin.Agent) *cloudInit {
	t.Helper()
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &cloudInit{client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		base: metadataURL}
	switch surface {
	case "unix socket":
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a.Sock)
		}
	case "tcp":
		c.base = "http://" + a.TCP
	case "proxy form":
		proxy.point(t, a.TCP)
		tr.Proxy = http.ProxyFromEnvironment
	default:
		t.Fatalf("unknown surface %q", surface)
	}
	return c
}

var surfaces = []string{"unix socket", "tcp", "proxy form"}

// TestCloudInitAllDocument reads meta-data/all, user-data and vendor-data
// the way cloud-init does, over each consumer surface: each must equal the
// simulator's bytes exactly (user-data is gzip, sent without
// Content-Encoding).
func TestCloudInitAllDocument(t *testing.T) {
	paths := []string{cloudInitRoot + "all", "/2016-01-01/user-data", "/2016-01-01/vendor-data"}
	for _, surface := range surfaces {
		t.Run(surface, func(t *testing.T) {
			a := testbin.StartAgent(t, simulator.Options{HardenedOnly: true})
			c := cloudInitOver(t, surface, a)
			if err := c.newToken(); err != nil {
				t.Fatal(err)
			}
			for _, p := range paths {
				want, _ := a.Sim.Value(p)
				status, got, err := c.get(p)
				if err != nil || status != http.StatusOK || !bytes.Equal(got, want) {
					t.Errorf("GET %s: %d, %d bytes, %v; want 200 and the simulator's %d bytes",
						p, status, len(got), err, len(want))
				}
			}
			checkTokenUse(t, a.Sim, scrape(t, a.Admin), 1)
		})
	}
}

// TestCloudInitWalk makes meta-data/all answer 404 upstream, so that
// cloud-init walks the tree, over each consumer surface. A cold walk makes
// 74 upstream-bound requests in a burst, more than the agent's default
// per-consumer burst (50), so these cases raise it; one case keeps the
// defaults and has cloud-init wait a real second before each retry, as it
// does. Another starts with a token the agent never issued (one kept
// across a restart), which must cost a 401, one new token and a retry.
func TestCloudInitWalk(t *testing.T) {
	raised := []string{"--consumer-burst", "1000"}
	cases := []struct {
		name, surface, token string
		flags                []string
		pause                func(time.Duration)
	}{
		{"unix socket", "unix socket", "", raised, nil},
		{"tcp", "tcp", "", raised, nil},
		{"proxy form", "proxy form", "", raised, nil},
		{"stale token", "tcp", "a-token-from-before-a-restart", raised, nil},
		{"default per-consumer limit", "tcp", "", nil, time.Sleep},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := testbin.StartAgent(t, simulator.Options{HardenedOnly: true}, tc.flags...)
			a.Sim.SetFault(cloudInitRoot+"all", simulator.Fault{Status: http.StatusNotFound})
			c := cloudInitOver(t, tc.surface, a)
			c.token, c.pause = tc.token, tc.pause
			if tc.token == "" {
				if err := c.newToken(); err != nil {
					t.Fatal(err)
				}
			}
			if status, _, err := c.get(cloudInitRoot + "all"); status != http.StatusNotFound {
				t.Fatalf("meta-data/all: %d, %v; want the upstream 404 passed on", status, err)
			}
			checkWalk(t, c, a.Sim)
			checkTokenUse(t, a.Sim, scrape(t, a.Admin), 1)
			t.Logf("%d reads retried", c.retries)
		})
	}
}

// checkWalk walks the tree through c and through the simulator's values,
// and fails unless both found the same entries, listings and leaves, with
// the same bytes.
func checkWalk(t *testing.T, c *cloudInit, sim *simulator.Server) {
	t.Helper()
	got, want := map[string][]byte{}, map[string][]byte{}
	if err := walk(c.get, cloudInitRoot, got); err != nil {
		t.Fatalf("walk through the agent: %v", err)
	}
	if err := walk(simRead(sim), cloudInitRoot, want); err != nil || len(want) < 20 {
		t.Fatalf("reference walk: %d entries, %v", len(want), err)
	}
	for p, v := range want {
		if !bytes.Equal(got[p], v) {
			t.Errorf("%s: agent answered %q, simulator holds %q", p, got[p], v)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: listed through the agent only", p)
		}
	}
	if t.Failed() {
		t.Logf("entries walked: %v", slices.Sorted(maps.Keys(got)))
	}
}
