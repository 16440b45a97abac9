package load

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mustTarget(t *testing.T, s string) Target {
	t.Helper()
	tg, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestRunCountsEveryRequest(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("i-test"))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Target: mustTarget(t, srv.URL),
		Paths: []string{"/a", "/missing"}, Connections: 4, Requests: 200, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 200 || served.Load() != 200 || res.Errors != 0 {
		t.Errorf("answered %d, served %d, errors %d; want 200, 200, 0",
			res.Requests, served.Load(), res.Errors)
	}
	if res.Status[200] != 100 || res.Status[404] != 100 {
		t.Errorf("status %v, want 100 of 200 and 100 of 404", res.Status)
	}
	if res.Reconnects != 0 || res.Rate <= 0 || res.Latency.P99 <= 0 {
		t.Errorf("reconnects %d, rate %v, p99 %v", res.Reconnects, res.Rate, res.Latency.P99)
	}
}

func TestRunOverUnixSocketWithSequence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.RawQuery] = true
		mu.Unlock()
		w.Header().Set("Connection", "close") // every request needs a new connection
		_, _ = w.Write([]byte("x"))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	res, err := Run(context.Background(), Config{Target: mustTarget(t, "unix:"+path),
		Paths: []string{"/p?k={seq}"}, Keys: 5, Connections: 2, Requests: 20,
		Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 20 || len(seen) != 5 || !seen["k=4"] || seen["k=5"] {
		t.Errorf("answered %d, keys seen %v; want 20 and k=0..k=4", res.Requests, seen)
	}
	if res.Reconnects < 18 {
		t.Errorf("reconnects %d, want one per answer after the first two", res.Reconnects)
	}
}

func TestHerdReleasesAllAtOnce(t *testing.T) {
	const n = 50
	var arrived sync.WaitGroup
	arrived.Add(n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		arrived.Wait() // answers only once the whole herd is in
		_, _ = w.Write([]byte("v"))
	}))
	defer srv.Close()
	res, err := Herd(context.Background(), HerdConfig{Target: mustTarget(t, srv.URL),
		Path: "/k", Concurrency: n, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != n || res.Status[200] != n || res.Errors != 0 {
		t.Errorf("answered %d (%v), errors %d; want %d 200s", res.Requests, res.Status,
			res.Errors, n)
	}
	if res.Slowest < res.Latency.P50 || res.Slowest == 0 {
		t.Errorf("slowest %v, p50 %v", res.Slowest, res.Latency.P50)
	}
}

func TestHerdCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("drop") != "" {
			panic(http.ErrAbortHandler)
		}
	}))
	defer srv.Close()
	res, err := Herd(context.Background(), HerdConfig{Target: mustTarget(t, srv.URL),
		Path: "/k?drop=1", Concurrency: 3, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 3 || res.Requests != 0 {
		t.Errorf("errors %d, answered %d; want 3 and 0", res.Errors, res.Requests)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, network, address string
		ok                   bool
	}{
		{"http://127.0.0.1:8080", "tcp", "127.0.0.1:8080", true},
		{"http://[::1]:8080/", "tcp", "[::1]:8080", true},
		{"http://localhost:80", "tcp", "localhost:80", true},
		{"unix:/run/a.sock", "unix", "/run/a.sock", true},
		{"http://100.100.100.200:80", "", "", false},
		{"http://169.254.169.254:80", "", "", false},
		{"http://example.com:80", "", "", false},
		{"https://127.0.0.1:443", "", "", false},
		{"http://127.0.0.1", "", "", false},
		{"http://127.0.0.1:80/path", "", "", false},
		{"unix:", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if (err == nil) != tt.ok || got.Network != tt.network || got.Address != tt.address {
				t.Errorf("ParseTarget(%q) = %+v, %v", tt.in, got, err)
			}
		})
	}
}

func TestReadAnswer(t *testing.T) {
	tests := []struct {
		name, raw string
		status    int
		keep      bool
		rest      string // what must be left unread
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT", 200, true, "NEXT"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nNEXT", 200, true, "NEXT"},
		{"close", "HTTP/1.1 404 Not Found\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n",
			404, false, ""},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, false, ""},
		{"to the end", "HTTP/1.1 200 OK\r\n\r\nbody", 200, false, ""},
		{"no body", "HTTP/1.1 304 Not Modified\r\n\r\nNEXT", 304, true, "NEXT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.raw))
			status, keep, err := readAnswer(br)
			rest, _ := br.Peek(br.Buffered())
			if err != nil || status != tt.status || keep != tt.keep || string(rest) != tt.rest {
				t.Errorf("got %d keep=%v err=%v rest %q", status, keep, err, rest)
			}
		})
	}
}

func TestReadAnswerRejectsGarbage(t *testing.T) {
	for _, raw := range []string{"SSH-2.0\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"} {
		if _, _, err := readAnswer(bufio.NewReader(strings.NewReader(raw))); err == nil {
			t.Errorf("readAnswer(%q): no error", raw)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := time.Duration(q*10000) * time.Microsecond
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/100 {
			t.Errorf("Quantile(%v) = %v, want %v to 1%% above", q, got, want)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Count() != 10000 {
		t.Errorf("max %v, count %d", h.Max(), h.Count())
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram: want zeros")
	}
}

func TestBucketsCoverEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 257, 1 << 20, 1<<20 + 12345, 1 << 62} {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets || upperBound(i) < v || (i > 0 && upperBound(i-1) >= v) {
			t.Errorf("value %d: bucket %d of bound %d", v, i, upperBound(i))
		}
	}
}

func ExampleParseTarget() {
	t, _ := ParseTarget("unix:/run/ecs-metadata-agent/agent.sock")
	fmt.Println(t.Network, t.Address)
	// Output: unix /run/ecs-metadata-agent/agent.sock
}

func TestRunWatchesProcesses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("x"))
	}))
	defer srv.Close()
	// The test process serves, so it is the one to watch.
	res, err := Run(context.Background(), Config{Target: mustTarget(t, srv.URL),
		Paths: []string{"/"}, Connections: 2, Requests: 2000, Timeout: 5 * time.Second,
		Watch: []int{os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Server == nil || res.Server.RSSMax <= 0 || res.Server.CPU < 0 || res.ClientCPU < 0 {
		t.Fatalf("usage %+v, client cpu %v", res.Server, res.ClientCPU)
	}
	_, err = Run(context.Background(), Config{Target: mustTarget(t, srv.URL),
		Paths: []string{"/"}, Connections: 1, Requests: 1, Timeout: time.Second,
		Watch: []int{1 << 30}})
	if err == nil {
		t.Error("watching a process that does not exist: no error")
	}
}
