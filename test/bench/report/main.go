// Command report reads the JSON lines test/bench/run.sh collects (one per
// run of ecs-metadata-loadgen or wrk, labelled PHASE:SERVER) and prints
// the tables of the Performance section: medians over the rounds, the
// ratios the targets are stated in, the cold herds and the memory.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// record is one run as the script wrote it; fields not filled by a mode
// stay zero.
type record struct {
	Label     string           `json:"label"`
	Mode      string           `json:"mode"`
	Round     int              `json:"round"`
	ElapsedS  float64          `json:"elapsed_s"`
	Requests  int64            `json:"requests"`
	Errors    int64            `json:"errors"`
	Status    map[string]int64 `json:"status"`
	RPS       float64          `json:"rps"`
	LatencyMS struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99.9"`
		Max  float64 `json:"max"`
	} `json:"latency_ms"`
	SlowestMS float64 `json:"slowest_ms"`
	Server    *struct {
		CPUShare  float64 `json:"cpu_share"`
		RSSMaxB   int64   `json:"rss_max_bytes"`
		PerCPUSec float64 `json:"requests_per_cpu_s"`
	} `json:"server"`
	ClientShare  float64  `json:"client_cpu_share"`
	Allocs       *float64 `json:"allocs_per_request"`
	Upstream     *int64   `json:"upstream_requests"`
	CacheEntries *int64   `json:"cache_entries"`
	LatencyAdded float64  `json:"upstream_latency_ms"`
	// UpstreamSeen is the time the herd's upstream request took as the
	// server measured it, in ms; nil when it did not say.
	UpstreamSeen *float64 `json:"upstream_seen_ms"`
}

// upstreamMS is the upstream latency a herd is judged against: what the
// server measured, or else the latency the simulator was told to add.
func (r record) upstreamMS() float64 {
	if r.UpstreamSeen != nil {
		return *r.UpstreamSeen
	}
	return r.LatencyAdded
}

// phase and server split the label "PHASE:SERVER".
func (r record) phase() string  { p, _, _ := strings.Cut(r.Label, ":"); return p }
func (r record) server() string { _, s, _ := strings.Cut(r.Label, ":"); return s }

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	recs, err := read(in)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	throughput(w, byPhase(recs, "tput"))
	crossCheck(w, byPhase(recs, "wrk"))
	herds(w, byPhase(recs, "herd"))
	memory(w, byPhase(recs, "mixed"), byPhase(recs, "tput"))
	targets(w, recs)
	return w.Flush()
}

func read(in io.Reader) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

func byPhase(recs []record, phase string) []record {
	var out []record
	for _, r := range recs {
		if r.phase() == phase {
			out = append(out, r)
		}
	}
	return out
}

// servers returns the server names in recs in their first order.
func servers(recs []record) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range recs {
		if !seen[r.server()] {
			seen[r.server()] = true
			names = append(names, r.server())
		}
	}
	return names
}

func ofServer(recs []record, name string) []record {
	var out []record
	for _, r := range recs {
		if r.server() == name {
			out = append(out, r)
		}
	}
	return out
}

// minShare is the CPU share below which a server was not the bottleneck of
// its round: something else on the machine held its core, or the load
// generator's. Such rounds measure the machine, not the server.
const minShare = 0.8

// saturated returns the rounds of name whose server used at least minShare
// of its core, or all of them when none did or none was watched.
func saturated(recs []record, name string) []record {
	all := ofServer(recs, name)
	var busy []record
	for _, r := range all {
		if r.Server != nil && r.Server.CPUShare >= minShare {
			busy = append(busy, r)
		}
	}
	if len(busy) == 0 {
		return all
	}
	return busy
}
