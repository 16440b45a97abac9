package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/cmd/ecs-metadata-loadgen/internal/load"
)

// jsonResult is the -json form of a result: times in milliseconds, memory
// in bytes, statuses by code.
type jsonResult struct {
	Label       string           `json:"label,omitempty"`
	Mode        string           `json:"mode"`
	Target      string           `json:"target"`
	Paths       []string         `json:"paths"`
	Connections int              `json:"connections"`
	ElapsedS    float64          `json:"elapsed_s"`
	Requests    int64            `json:"requests"`
	Errors      int64            `json:"errors"`
	Reconnects  int64            `json:"reconnects"`
	Status      map[string]int64 `json:"status"`
	RPS         float64          `json:"rps"`
	LatencyMS   jsonLatency      `json:"latency_ms"`
	SlowestMS   float64          `json:"slowest_ms"`
	Server      *jsonUsage       `json:"server,omitempty"`
	// ClientShare is the generator's CPU seconds per elapsed second.
	ClientShare float64 `json:"client_cpu_share"`
}

type jsonLatency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

type jsonUsage struct {
	PIDs      []int   `json:"pids"`
	CPUS      float64 `json:"cpu_s"`
	CPUShare  float64 `json:"cpu_share"` // CPU seconds per elapsed second
	RSSMaxB   int64   `json:"rss_max_bytes"`
	PerCPUSec float64 `json:"requests_per_cpu_s"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func writeJSON(w io.Writer, label string, r load.Result) error {
	j := jsonResult{Label: label, Mode: r.Mode, Target: r.Target, Paths: r.Paths,
		Connections: r.Connections, ElapsedS: r.Elapsed.Seconds(), Requests: r.Requests,
		Errors: r.Errors, Reconnects: r.Reconnects, Status: map[string]int64{},
		RPS: r.Rate, SlowestMS: ms(r.Slowest), LatencyMS: jsonLatency{
			P50: ms(r.Latency.P50), P90: ms(r.Latency.P90), P99: ms(r.Latency.P99),
			P999: ms(r.Latency.P999), Mean: ms(r.Latency.Mean), Max: ms(r.Latency.Max)}}
	for code, n := range r.Status {
		j.Status[strconv.Itoa(code)] = n
	}
	if r.Elapsed > 0 {
		j.ClientShare = r.ClientCPU.Seconds() / r.Elapsed.Seconds()
	}
	if u := r.Server; u != nil {
		j.Server = &jsonUsage{PIDs: u.PIDs, CPUS: u.CPU.Seconds(), RSSMaxB: u.RSSMax,
			CPUShare: u.CPU.Seconds() / r.Elapsed.Seconds()}
		if u.CPU > 0 {
			j.Server.PerCPUSec = float64(r.Requests) / u.CPU.Seconds()
		}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(j)
}

func writeText(w io.Writer, label string, r load.Result) error {
	var b strings.Builder
	if label != "" {
		fmt.Fprintf(&b, "%s: ", label)
	}
	fmt.Fprintf(&b, "%s %s, %d connections, %s, %.2fs\n", r.Mode, r.Target,
		r.Connections, strings.Join(r.Paths, " "), r.Elapsed.Seconds())
	fmt.Fprintf(&b, "  requests  %d answered, %d errors, %d reconnects, %.0f req/s\n",
		r.Requests, r.Errors, r.Reconnects, r.Rate)
	fmt.Fprintf(&b, "  status    %s\n", statusText(r.Status))
	l := r.Latency
	fmt.Fprintf(&b, "  latency   p50 %s  p99 %s  p99.9 %s  max %s\n",
		round(l.P50), round(l.P99), round(l.P999), round(l.Max))
	if r.Mode == "herd" {
		fmt.Fprintf(&b, "  slowest   %s from the release of the herd\n", round(r.Slowest))
	}
	if u := r.Server; u != nil {
		fmt.Fprintf(&b, "  server    pids %v: cpu %.2fs (%.0f%% of one core), "+
			"peak VmRSS %.1f MiB\n", u.PIDs, u.CPU.Seconds(),
			100*u.CPU.Seconds()/r.Elapsed.Seconds(), float64(u.RSSMax)/(1<<20))
	}
	if r.ClientCPU > 0 {
		fmt.Fprintf(&b, "  generator cpu %.2fs (%.0f%% of one core)\n", r.ClientCPU.Seconds(),
			100*r.ClientCPU.Seconds()/r.Elapsed.Seconds())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func statusText(status map[int]int64) string {
	if len(status) == 0 {
		return "none"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(status)) {
		parts = append(parts, fmt.Sprintf("%d=%d", code, status[code]))
	}
	return strings.Join(parts, " ")
}

// round keeps three significant digits or so of a latency.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}
