package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// The benchmarks below call (*Agent).ServeHTTP directly with a reusable
// ResponseWriter and request, so that they measure the agent and not
// net/http; test/bench measures the whole server. Upstream is a simulator
// on loopback with the real clock.

// benchWriter is a ResponseWriter that keeps only the status and the body
// length. Its header map is reused, so that writing headers the agent
// builds once costs no allocation.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func newBenchWriter() *benchWriter { return &benchWriter{h: make(http.Header, 4)} }

func (w *benchWriter) Header() http.Header { return w.h }

func (w *benchWriter) WriteHeader(status int) { w.status = status }

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// reset readies w for the next request; the header map is kept.
func (w *benchWriter) reset() { w.status, w.n = 0, 0 }

// newBenchAgent starts a simulator and a ready agent in front of it, with
// the rate limits off so that misses are never throttled.
func newBenchAgent(b *testing.B) (*Agent, *simulator.Server) {
	b.Helper()
	sim, err := simulator.Start("127.0.0.1:0", simulator.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sim.Close() })
	cfg := Defaults()
	cfg.Upstream = sim.URL()
	cfg.Listen, cfg.AdminListen, cfg.Warmup = nil, "", nil
	cfg.UpstreamRate, cfg.UpstreamBurst, cfg.ConsumerRate = 10000, 10000, 0
	a, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	ready := make(chan struct{})
	a.Start(func() { close(ready) })
	<-ready
	return a, sim
}

// serveOnce sends r through the agent and fails unless it answers want.
func serveOnce(b *testing.B, a *Agent, r *http.Request, want int) {
	b.Helper()
	w := newBenchWriter()
	a.ServeHTTP(w, r)
	if w.status != want {
		b.Fatalf("%s %s: status %d, want %d", r.Method, r.URL, w.status, want)
	}
}

// BenchmarkHit is the cache-hit path through ServeHTTP, as net/http
// serves the requests the lean path hands it: target and path checks, the
// token check, the cache lookup and the write.
func BenchmarkHit(b *testing.B) {
	a, _ := newBenchAgent(b)
	tok := issueBenchToken(b, a)
	cases := []struct {
		name, target string
		headers      map[string]string
	}{
		{"instance-id", "/latest/meta-data/instance-id", nil},
		{"with-token", "/latest/meta-data/instance-id",
			map[string]string{tokenHeader: tok}},
		{"pkcs7-audience", "/latest/dynamic/instance-identity/pkcs7?audience=bench", nil},
		{"absolute-form", "http://" + MetadataHost + "/latest/meta-data/region-id", nil},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := fromTCP(httptest.NewRequest(http.MethodGet, c.target, nil))
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			serveOnce(b, a, r, http.StatusOK) // fills the cache
			benchServe(b, a, r)
		})
	}
}

// fromTCP makes r look as it does behind the agent's own server: from a
// TCP consumer (as ConnContext records it), for a loopback Host.
func fromTCP(r *http.Request) *http.Request {
	r.Host = "127.0.0.1:8080"
	who := &Consumer{Addr: netip.MustParseAddr("127.0.0.1"), id: "127.0.0.1", tcp: true}
	return r.WithContext(context.WithValue(r.Context(), consumerKey{}, who))
}

// BenchmarkLeanHit is a cache hit on the lean path without the network:
// parsing the request head, the checks, the lookup and writing the answer
// into the connection's buffer.
func BenchmarkLeanHit(b *testing.B) {
	a, _ := newBenchAgent(b)
	tok := issueBenchToken(b, a)
	for _, c := range []struct{ name, head string }{
		{"instance-id", get("/latest/meta-data/instance-id",
			hdr("User-Agent", "Go-http-client/1.1"), hdr("Accept-Encoding", "gzip"))},
		{"with-token", get("/latest/meta-data/instance-id", hdr(tokenName, tok))},
		{"pkcs7-audience", get("/latest/dynamic/instance-identity/pkcs7?audience=bench")},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := &leanServer{a: a}
			var out bytes.Buffer
			lc := &leanConn{s: s, who: &Consumer{id: "127.0.0.1", tcp: true},
				bw: bufio.NewWriterSize(&out, leanWriteSize)}
			head := []byte(c.head)
			b.ReportAllocs()
			for b.Loop() {
				out.Reset()
				lc.bw.Reset(&out)
				if _, err := lc.answer(head); err != nil {
					b.Fatal(err)
				}
				_ = lc.bw.Flush()
			}
			if !bytes.HasPrefix(out.Bytes(), []byte("HTTP/1.1 200 OK\r\n")) {
				b.Fatalf("answer %q", out.Bytes())
			}
		})
	}
}

// benchServe times ServeHTTP of r, which must be answered 200 every time.
func benchServe(b *testing.B, a *Agent, r *http.Request) {
	w := newBenchWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		a.ServeHTTP(w, r)
	}
	if w.status != http.StatusOK || w.n == 0 {
		b.Fatalf("last answer: status %d, %d bytes", w.status, w.n)
	}
}

// BenchmarkHitParallel is BenchmarkHit/instance-id from GOMAXPROCS
// goroutines at once: it shows what the cache's one mutex costs.
func BenchmarkHitParallel(b *testing.B) {
	a, _ := newBenchAgent(b)
	const path = "/latest/meta-data/instance-id"
	serveOnce(b, a, fromTCP(httptest.NewRequest(http.MethodGet, path, nil)), http.StatusOK)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := fromTCP(httptest.NewRequest(http.MethodGet, path, nil))
		w := newBenchWriter()
		for pb.Next() {
			w.reset()
			a.ServeHTTP(w, r)
		}
	})
}

// BenchmarkLookupHit is the cache lookup alone, as ServeHTTP does it for
// a fresh entry: it must not allocate.
func BenchmarkLookupHit(b *testing.B) {
	a, _ := newBenchAgent(b)
	const path = "/latest/meta-data/instance-id"
	serveOnce(b, a, httptest.NewRequest(http.MethodGet, path, nil), http.StatusOK)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.lookup(ctx, path, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCollapsedMiss releases n requests for one cold key at once, each
// from its own goroutine, and waits for every answer. Upstream is the
// simulator without added latency; upstream/op must stay at 1.
func BenchmarkCollapsedMiss(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			a, sim := newBenchAgent(b)
			h := newBenchHerd(a, n)
			defer h.stop()
			const path = "/latest/dynamic/instance-identity/pkcs7"
			sim.ResetStats()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				h.release(b, "audience=miss-"+strconv.Itoa(i))
			}
			ups := sim.Stats().Requests["GET "+path]
			b.ReportMetric(float64(ups)/float64(i), "upstream/op")
		})
	}
}

// benchHerd is n goroutines parked until a release, each with its own
// request and writer, so that a release costs no goroutine start.
type benchHerd struct {
	a       *Agent
	reqs    []*http.Request
	writers []*benchWriter
	gates   []chan chan struct{}
	done    sync.WaitGroup
}

func newBenchHerd(a *Agent, n int) *benchHerd {
	h := &benchHerd{a: a}
	for range n {
		r := fromTCP(httptest.NewRequest(http.MethodGet,
			"/latest/dynamic/instance-identity/pkcs7", nil))
		h.reqs = append(h.reqs, r)
		h.writers = append(h.writers, newBenchWriter())
		h.gates = append(h.gates, make(chan chan struct{}))
	}
	for i := range n {
		go h.member(i)
	}
	return h
}

// member serves its request each time its gate opens, until stop.
func (h *benchHerd) member(i int) {
	for gate := range h.gates[i] {
		<-gate
		h.writers[i].reset()
		h.a.ServeHTTP(h.writers[i], h.reqs[i])
		h.done.Done()
	}
}

// release sets every request's query, opens the gate for all members at
// once and waits until each has its answer, which must be 200.
func (h *benchHerd) release(b *testing.B, query string) {
	gate := make(chan struct{})
	h.done.Add(len(h.reqs))
	for i, r := range h.reqs {
		r.URL.RawQuery = query
		h.gates[i] <- gate
	}
	close(gate)
	h.done.Wait()
	for _, w := range h.writers {
		if w.status != http.StatusOK {
			b.Fatalf("a member of the herd got %d, want 200", w.status)
		}
	}
}

func (h *benchHerd) stop() {
	for _, g := range h.gates {
		close(g)
	}
}

// BenchmarkTokenPUT is a consumer's token PUT, answered locally. With a
// store already holding the most tokens it keeps, each PUT first makes
// room.
func BenchmarkTokenPUT(b *testing.B) {
	for _, full := range []bool{false, true} {
		name := map[bool]string{false: "store-empty", true: "store-full"}[full]
		b.Run(name, func(b *testing.B) {
			a, _ := newBenchAgent(b)
			r := httptest.NewRequest(http.MethodPut, tokenPath, nil)
			r.Header.Set(tokenTTLHeader, "21600")
			if full {
				fillTokenStore(a)
			}
			benchTokenPUTs(b, a, r, full)
		})
	}
}

// benchTokenPUTs times PUTs; unless full, it empties the store before it
// fills up, outside the timing, so that no PUT has to make room.
func benchTokenPUTs(b *testing.B, a *Agent, r *http.Request, full bool) {
	w := newBenchWriter()
	b.ReportAllocs()
	for b.Loop() {
		if !full && a.tokens.len() >= maxConsumerTokens-1 {
			b.StopTimer()
			a.tokens = newTokenStore(a.now, maxConsumerTokens)
			b.StartTimer()
		}
		w.reset()
		a.ServeHTTP(w, r)
	}
	if w.status != http.StatusOK {
		b.Fatalf("last token PUT: status %d", w.status)
	}
}

func fillTokenStore(a *Agent) {
	for a.tokens.len() < maxConsumerTokens {
		a.tokens.issue(time.Duration(maxTokenTTL) * time.Second)
	}
}

// issueBenchToken gets a consumer token through a local PUT.
func issueBenchToken(b *testing.B, a *Agent) string {
	b.Helper()
	r := httptest.NewRequest(http.MethodPut, tokenPath, nil)
	r.Header.Set(tokenTTLHeader, "21600")
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("token PUT: %d", w.Code)
	}
	return w.Body.String()
}

// BenchmarkHitServer is a hit through a real server on loopback, one
// keep-alive connection, one request at a time: allocs/op is what a hit
// costs with the server's share included, since the client below
// allocates nothing. "agent" is served as Run serves it (the lean path),
// "agent-net-http" by a plain http.Server with the full handler, and
// "bare" is a handler that writes a fixed answer, for comparison.
func BenchmarkHitServer(b *testing.B) {
	a, _ := newBenchAgent(b)
	body := []byte("i-bench")
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		_, _ = w.Write(body)
	})
	b.Run("agent", func(b *testing.B) {
		benchRoundTrips(b, serveAgent(b, a).Listener.Addr().String(),
			"/latest/meta-data/instance-id")
	})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"agent-net-http", a}, {"bare", bare}} {
		b.Run(c.name, func(b *testing.B) {
			addr := benchServer(b, c.h)
			benchRoundTrips(b, addr, "/latest/meta-data/instance-id")
		})
	}
}

// benchServer serves h on a loopback port, as the agent's own server does,
// and returns its address.
func benchServer(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	if a, ok := h.(*Agent); ok {
		srv.ConnContext = a.ConnContext
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// benchRoundTrips sends GETs of path on one connection, one at a time.
func benchRoundTrips(b *testing.B, addr, path string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	br := bufio.NewReader(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := discardAnswer(br); err != nil {
			b.Fatal(err)
		}
	}
}

// discardAnswer reads one 200 answer with a Content-Length, allocating
// nothing.
func discardAnswer(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q: %v", line, err)
	}
	length := -1
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length = 0
			for _, c := range bytes.TrimSpace(v) {
				length = length*10 + int(c-'0')
			}
		}
	}
	if length < 0 {
		return errors.New("answer without Content-Length")
	}
	_, err = br.Discard(length)
	return err
}
