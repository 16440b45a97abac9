package load

import "time"

// Latency summarizes the latencies of the answers of a run.
type Latency struct {
	P50, P90, P99, P999 time.Duration
	Mean, Max           time.Duration
}

func summarize(h *Histogram) Latency {
	return Latency{
		P50: h.Quantile(0.50), P90: h.Quantile(0.90),
		P99: h.Quantile(0.99), P999: h.Quantile(0.999),
		Mean: h.Mean(), Max: h.Max(),
	}
}

// Usage is what the watched server processes spent during the measured
// window, read from /proc.
type Usage struct {
	PIDs []int
	// CPU is the user and system time of all of them together.
	CPU time.Duration
	// RSSMax is the largest sum of their VmRSS sampled, in bytes.
	RSSMax int64
}

// Result is what a run measured.
type Result struct {
	Mode        string // "load" or "herd"
	Target      string
	Paths       []string
	Connections int
	// Elapsed is the measured window: warm-up excluded.
	Elapsed time.Duration
	// Requests counts the answers in the window, whatever their status.
	Requests int64
	// Errors counts requests that got no answer: refused, reset, timed out.
	Errors     int64
	Reconnects int64
	Status     map[int]int64
	// Rate is Requests per second of Elapsed.
	Rate float64
	// Latency covers the answers, each from the moment its request was
	// sent. Slowest is the longest wait, errors included; for a herd it
	// runs from the release of the whole herd.
	Latency Latency
	Slowest time.Duration
	Server  *Usage // nil when no process was watched
	// ClientCPU is the CPU time the generator itself used in the window
	// (closed-loop runs only): near Elapsed, the generator was the limit.
	ClientCPU time.Duration
}

// tally is one goroutine's share of a result.
type tally struct {
	hist       Histogram
	status     [600]int64
	errors     int64
	reconnects int64
	slowest    time.Duration
}

func (t *tally) answer(status int, d time.Duration) {
	t.hist.Record(d)
	t.status[min(max(status, 0), len(t.status)-1)]++
	t.slowest = max(t.slowest, d)
}

func (t *tally) fail(d time.Duration) {
	t.errors++
	t.slowest = max(t.slowest, d)
}

// total merges tallies into r.
func (r *Result) total(tallies []*tally) {
	var h Histogram
	r.Status = map[int]int64{}
	for _, t := range tallies {
		h.Merge(&t.hist)
		for code, n := range t.status {
			if n > 0 {
				r.Status[code] += n
			}
		}
		r.Errors += t.errors
		r.Reconnects += t.reconnects
		r.Slowest = max(r.Slowest, t.slowest)
	}
	r.Requests = int64(h.Count())
	r.Latency = summarize(&h)
	if r.Elapsed > 0 {
		r.Rate = float64(r.Requests) / r.Elapsed.Seconds()
	}
}
