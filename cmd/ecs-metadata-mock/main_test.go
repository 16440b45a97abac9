package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lockedBuffer is a bytes.Buffer safe to write from run's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRun runs the command with args and returns the address it printed
// and a stop function that returns run's error.
func startRun(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw, &lockedBuffer{})
		pw.CloseWithError(io.EOF)
		errc <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("no listening line: %v (run: %v)", err, <-errc)
	}
	fields := strings.Fields(line)
	if !strings.HasPrefix(line, "ecs-metadata-mock listening on ") {
		t.Errorf("line %q", line)
	}
	stop := func() error {
		cancel()
		go func() { _, _ = io.Copy(io.Discard, pr) }() // until run closes pw
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return after cancel")
			return nil
		}
	}
	return fields[len(fields)-1], stop
}

func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunServes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		path string
		want int
		body string
	}{
		{"defaults", nil, "/latest/meta-data/instance-id", 200, "i-bp1c7mxq2nd9ltws4k8e"},
		{"hardened only", []string{"--hardened-only"}, "/latest/meta-data/instance-id",
			401, ""},
		{"instance file", []string{"--instance",
			filepath.Join("..", "..", "simulator", "testdata", "instance.json")},
			"/latest/meta-data/region-id", 200, "cn-hangzhou"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--listen", "127.0.0.1:0"}, tt.args...)
			url, stop := startRun(t, args...)
			tr := &http.Transport{}
			hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			status, body := get(t, hc, url+tt.path)
			if status != tt.want || (tt.body != "" && body != tt.body) {
				t.Errorf("got %d %q, want %d %q", status, body, tt.want, tt.body)
			}
			tr.CloseIdleConnections()
			if err := stop(); err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}

func TestRunRateLimited(t *testing.T) {
	url, stop := startRun(t, "--listen", "127.0.0.1:0", "--rate-limit", "0.001")
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	first, _ := get(t, hc, url+"/latest/meta-data/mac")
	second, _ := get(t, hc, url+"/latest/meta-data/mac")
	if first != 200 || second != 429 {
		t.Errorf("statuses %d, %d; want 200, 429", first, second)
	}
	tr.CloseIdleConnections()
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestRunUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	addr, stop := startRun(t, "--listen", "unix:"+sock)
	if addr != "unix:"+sock {
		t.Errorf("printed %q, want unix:%s", addr, sock)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	status, body := get(t, &http.Client{Transport: tr}, "http://mock/latest/meta-data/zone-id")
	if status != 200 || body != "cn-hangzhou-i" {
		t.Errorf("got %d %q", status, body)
	}
	tr.CloseIdleConnections()
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestRunUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want []string // substrings of the message
	}{
		{[]string{"--rate-limit", "abc"}, []string{"rate-limit", `"abc"`, "0 or more"}},
		{[]string{"--rate-limit", "-1"}, []string{"rate-limit", `"-1"`, "0 or more"}},
		{[]string{"--rate-limit", "NaN"}, []string{"rate-limit", `"NaN"`}},
		{[]string{"--burst", "x"}, []string{"burst", `"x"`, "integer"}},
		{[]string{"--burst", "-3"}, []string{"burst", `"-3"`, "0 or more"}},
		{[]string{"--listen", "nope"}, []string{"listen", `"nope"`, "host:port"}},
		{[]string{"--listen", "127.0.0.1:99999"}, []string{"listen", "99999", "0-65535"}},
		{[]string{"--listen", "unix:"}, []string{"listen", "unix:/path"}},
		{[]string{"--hardened-only=maybe"}, []string{"hardened-only", `"maybe"`,
			"true or false"}},
		{[]string{"--bogus"}, []string{"bogus"}},
		{[]string{"extra"}, []string{`"extra"`, "flags only"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr lockedBuffer
			err := run(context.Background(), tt.args, io.Discard, &stderr)
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("error %v, exit code %d; want a usage error", err, exitCode(err))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRunOtherErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.json")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing instance", []string{"--listen", "127.0.0.1:0", "--instance", missing},
			missing},
		{"address in use", []string{"--listen", ln.Addr().String()}, "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v (exit %d), want exit 1 mentioning %q", err,
					exitCode(err), tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var stderr lockedBuffer
	if err := run(context.Background(), []string{"-h"}, io.Discard, &stderr); err != nil {
		t.Fatalf("run -h: %v", err)
	}
	for _, w := range []string{"-listen", "-instance", "-hardened-only", "-rate-limit",
		"-burst", "ECS_METADATA_MOCK_", defaultListen} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("usage does not mention %q:\n%s", w, stderr.String())
		}
	}
}

func TestEnvironment(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    config
		wantErr string
	}{
		{"defaults", nil, nil, config{Listen: defaultListen}, ""},
		{"from env", map[string]string{
			"ECS_METADATA_MOCK_LISTEN":        "127.0.0.1:9",
			"ECS_METADATA_MOCK_HARDENED_ONLY": "true",
			"ECS_METADATA_MOCK_RATE_LIMIT":    "2.5",
			"ECS_METADATA_MOCK_BURST":         "4",
			"ECS_METADATA_MOCK_INSTANCE":      "x.json",
		}, nil, config{Listen: "127.0.0.1:9", InstanceFile: "x.json", HardenedOnly: true,
			RateLimit: 2.5, Burst: 4}, ""},
		{"flag beats env", map[string]string{"ECS_METADATA_MOCK_BURST": "4"},
			[]string{"--burst", "7"}, config{Listen: defaultListen, Burst: 7}, ""},
		{"bad env", map[string]string{"ECS_METADATA_MOCK_RATE_LIMIT": "fast"}, nil,
			config{}, `"fast" for $ECS_METADATA_MOCK_RATE_LIMIT`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			got, err := parseConfig(tt.args, lookup, io.Discard)
			if tt.wantErr != "" {
				if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want a usage error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
