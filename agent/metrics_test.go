package agent

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// TestUpstreamDuration checks that each upstream read is timed once, and
// that the time covers upstream's own latency; hits are not timed.
func TestUpstreamDuration(t *testing.T) {
	r := newRig(t, simulator.Options{}, nil)
	const path = "/latest/meta-data/serial-number"
	const latency = 30 * time.Millisecond
	r.get(t, "/latest/meta-data/instance-id") // one upstream read, no latency
	r.sim.SetFault(path, simulator.Fault{Latency: latency})
	for range 3 { // one miss, then two hits
		if status, _ := r.get(t, path); status != 200 {
			t.Fatalf("GET %s: %d", path, status)
		}
	}
	h := upstreamHistogram(t, r.agent)
	if got := h.GetSampleCount(); got != 2 {
		t.Errorf("%d upstream reads timed, want 2 (instance-id, then one miss)", got)
	}
	if got := h.GetSampleSum(); got < latency.Seconds() {
		t.Errorf("upstream time %.3fs in all, want at least the %v of latency", got, latency)
	}
}

func upstreamHistogram(t *testing.T, a *Agent) *dto.Histogram {
	t.Helper()
	families, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == namespace+"_upstream_request_duration_seconds" {
			return f.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatal("no upstream_request_duration_seconds in the registry")
	return nil
}
