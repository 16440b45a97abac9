package simulator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

func TestFaultStatusCount(t *testing.T) {
	e := start(t, simulator.Options{})
	e.sim.SetFault(md+"instance-id", simulator.Fault{Status: 503, Count: 2})
	steps := []struct {
		path      string
		want      int
		remaining int // Count left afterwards; -1: fault gone
	}{
		{md + "hostname", 200, 2},
		{md + "instance-id", 503, 1},
		{md + "instance-id?", 503, -1},
		{md + "instance-id", 200, -1},
	}
	for i, st := range steps {
		r := e.get(st.path)
		if r.status != st.want {
			t.Fatalf("step %d %s: status %d, want %d", i, st.path, r.status, st.want)
		}
		if st.want == 503 && (!strings.Contains(r.body, "503") ||
			r.header.Get("Content-Type") != "text/plain; charset=utf-8") {
			t.Errorf("step %d: fault answer %q %q", i, r.header.Get("Content-Type"), r.body)
		}
		f, ok := e.sim.Faults()[md+"instance-id"]
		if (st.remaining < 0) == ok || (ok && f.Count != st.remaining) {
			t.Errorf("step %d: fault %+v present %v, want Count %d", i, f, ok, st.remaining)
		}
	}
}

func TestFaultPrefixes(t *testing.T) {
	tests := []struct {
		name   string
		faults map[string]int // prefix -> status
		path   string
		want   int
	}{
		{"empty prefix matches all", map[string]int{"": 500}, "/latest/user-data", 500},
		{"empty prefix spares control", map[string]int{"": 500}, "/_simulator/stats", 200},
		{"dir prefix covers bare dir", map[string]int{md: 502}, "/latest/meta-data", 502},
		{"relative prefix", map[string]int{"latest/user-data": 504}, "/latest/user-data", 504},
		{"no match", map[string]int{md + "hostname": 500}, md + "instance-id", 200},
		{"longest wins", map[string]int{"/latest/": 500, md: 502}, md + "zone-id", 502},
		{"shorter elsewhere", map[string]int{"/latest/": 500, md: 502},
			"/latest/user-data", 500},
		{"cleaned path", map[string]int{md + "instance-id": 503},
			"/latest/x/../meta-data/instance-id", 503},
		{"token path", map[string]int{"/latest/api/token": 500}, "/latest/api/token", 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, simulator.Options{})
			for p, status := range tt.faults {
				e.sim.SetFault(p, simulator.Fault{Status: status})
			}
			if r := e.get(tt.path); r.status != tt.want {
				t.Errorf("status %d, want %d", r.status, tt.want)
			}
		})
	}
}

func TestClearFaults(t *testing.T) {
	e := start(t, simulator.Options{})
	e.sim.SetFault("", simulator.Fault{Status: 500})
	e.sim.SetFault(md, simulator.Fault{Status: 502})
	e.sim.SetFault(md+"mac", simulator.Fault{Status: 503})
	e.sim.SetFault(md+"mac", simulator.Fault{}) // a fault doing nothing removes
	steps := []struct {
		do         func()
		path       string
		want       int
		wantFaults int
	}{
		{nil, md + "mac", 502, 2},
		{nil, md + "mac", 502, 2}, // Count 0: until cleared
		{e.sim.ClearFaults, md + "mac", 200, 0},
		{nil, "/latest/user-data", 200, 0},
	}
	for i, st := range steps {
		if st.do != nil {
			st.do()
		}
		if r := e.get(st.path); r.status != st.want {
			t.Errorf("step %d: status %d, want %d", i, r.status, st.want)
		}
		if n := len(e.sim.Faults()); n != st.wantFaults {
			t.Errorf("step %d: %d faults, want %d", i, n, st.wantFaults)
		}
	}
}

func TestFaultLatency(t *testing.T) {
	e := start(t, simulator.Options{})
	const lat = 30 * time.Millisecond
	e.sim.SetFault(md+"hostname", simulator.Fault{Latency: lat, Count: 1})
	e.sim.SetFault(md+"zone-id", simulator.Fault{Latency: lat, Status: 500})
	began := time.Now()
	want200(t, "delayed", e.get(md+"hostname"), "iZbp1c7mxq2nd9ltws4k8eZ")
	if took := time.Since(began); took < lat {
		t.Errorf("answered after %v, want at least %v", took, lat)
	}
	if r := e.get(md + "zone-id"); r.status != 500 {
		t.Errorf("latency then status: %d, want 500", r.status)
	}
}

func TestFaultDrop(t *testing.T) {
	e := start(t, simulator.Options{})
	e.sim.SetFault(md, simulator.Fault{Drop: true, Count: 1})
	// A fresh connection per request: Go retries a GET whose reused
	// connection closes, which would hide the drop.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	e.hc.Transport = tr
	if r, err := e.send(context.Background(), http.MethodGet, md+"mac"); err == nil {
		t.Fatalf("dropped request answered %d", r.status)
	}
	want200(t, "after the drop", e.get(md+"mac"), mac0)
}

func TestFaultDropWithoutHijack(t *testing.T) {
	sim, err := simulator.New(simulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.SetFault("", simulator.Fault{Drop: true})
	got := func() (v any) {
		defer func() { v = recover() }()
		sim.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", md, nil))
		return nil
	}()
	if got != http.ErrAbortHandler {
		t.Errorf("recovered %v, want http.ErrAbortHandler", got)
	}
}

// TestFaultWaitsEnd checks that hanging and delayed handlers return when
// the client leaves or the server closes, sending nothing.
func TestFaultWaitsEnd(t *testing.T) {
	faults := map[string]simulator.Fault{
		"hang":    {Hang: true},
		"latency": {Latency: time.Hour},
	}
	for name, f := range faults {
		for _, end := range []string{"client leaves", "close"} {
			t.Run(name+", "+end, func(t *testing.T) {
				sim, err := simulator.New(simulator.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer sim.Close()
				sim.SetFault("", f)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := serveAsync(sim, httptest.NewRequestWithContext(ctx, "GET", md, nil))
				waitFor(t, "request arrival", func() bool {
					return sim.Stats().Requests["GET "+md] == 1
				})
				if end == "close" {
					go sim.Close()
				} else {
					cancel()
				}
				select {
				case v := <-done:
					if v != http.ErrAbortHandler {
						t.Errorf("handler ended with %v, want abort", v)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("handler still waiting")
				}
			})
		}
	}
}

// serveAsync runs the handler in a goroutine and sends what it panicked
// with (nil if it returned).
func serveAsync(sim *simulator.Server, req *http.Request) <-chan any {
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		sim.Handler().ServeHTTP(httptest.NewRecorder(), req)
	}()
	return done
}

func TestCloseEndsHangOverNetwork(t *testing.T) {
	e := start(t, simulator.Options{})
	e.sim.SetFault("", simulator.Fault{Hang: true})
	errc := make(chan error, 1)
	go func() {
		_, err := e.send(context.Background(), http.MethodGet, md+"region-id")
		errc <- err
	}()
	waitFor(t, "request arrival", func() bool {
		return e.sim.Stats().Requests["GET "+md+"region-id"] == 1
	})
	closed := make(chan error, 1)
	go func() { closed <- e.sim.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a hanging request")
	}
	if err := <-errc; err == nil {
		t.Error("hanging request got an answer")
	}
}

func TestFaultJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    simulator.Fault
		wantErr string
	}{
		{`{"latency":"50ms","status":0,"hang":false,"drop":false,"count":0}`,
			simulator.Fault{Latency: 50 * time.Millisecond}, ""},
		{`{"status":503,"count":2}`, simulator.Fault{Status: 503, Count: 2}, ""},
		{`{"hang":true}`, simulator.Fault{Hang: true}, ""},
		{`{"latency":"fast"}`, simulator.Fault{}, `latency "fast"`},
		{`{"latency":"-1s"}`, simulator.Fault{}, `latency "-1s"`},
		{`{"status":99}`, simulator.Fault{}, "status 99"},
		{`{"status":600}`, simulator.Fault{}, "status 600"},
		{`{"count":-1}`, simulator.Fault{}, "count -1"},
		{`{"latency":50}`, simulator.Fault{}, "latency"},
		{`{"sleep":"1s"}`, simulator.Fault{}, `unknown field "sleep"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var f simulator.Fault
			err := f.UnmarshalJSON([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || f != tt.want {
				t.Fatalf("got %+v, %v; want %+v", f, err, tt.want)
			}
			b, _ := f.MarshalJSON()
			var back simulator.Fault
			if err := back.UnmarshalJSON(b); err != nil || back != f {
				t.Errorf("round trip %s gave %+v, %v", b, back, err)
			}
		})
	}
}

func TestFaultStatusNormalized(t *testing.T) {
	e := start(t, simulator.Options{})
	e.sim.SetFault(md, simulator.Fault{Status: 42})
	if r := e.get(md); r.status != 500 {
		t.Errorf("status %d, want 500 for an out-of-range fault status", r.status)
	}
}
