package main

import (
	"bufio"
	"fmt"
)

func throughput(w *bufio.Writer, recs []record) {
	if len(recs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nCache-hit throughput: medians (min-max) over the rounds in which "+
		"the server used at least %.0f%% of its core\n\n", 100*minShare)
	fmt.Fprintln(w, "| server | rounds | req/s | p50 ms | p99 ms | p99.9 ms | server CPU | "+
		"generator CPU | req per server CPU-s | heap allocs per hit | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, name := range servers(recs) {
		rs := saturated(recs, name)
		fmt.Fprintf(w, "| %s | %d/%d | %.0f (%s) | %.3f | %.3f (%s) | %.3f | %.0f%% | %.0f%% | "+
			"%.0f | %s | %d |\n", name, len(rs), len(ofServer(recs, name)), median(rs, rps),
			spread(rs, rps, "%.0f"), median(rs, p50), median(rs, p99), spread(rs, p99, "%.2f"),
			median(rs, p999), 100*median(rs, cpuShare), 100*median(rs, clientShare),
			median(rs, perCPU), allocsOf(rs), errorsOf(ofServer(recs, name)))
	}
	fmt.Fprintln(w)
	ratioLine(w, recs, "agent-tcp", "nginx", "agent-tcp/nginx")
	ratioLine(w, recs, "agent-tcp", "bare", "agent-tcp/bare")
	ratioLine(w, recs, "agent-unix", "agent-tcp", "agent-unix/agent-tcp")
}

// ratioLine prints the ratios of the medians of a to those of b: req/s,
// req per CPU-second, and p99 (below 1 is better for p99).
func ratioLine(w *bufio.Writer, recs []record, a, b, name string) {
	ra, rb := saturated(recs, a), saturated(recs, b)
	if len(ra) == 0 || len(rb) == 0 {
		return
	}
	fmt.Fprintf(w, "- %s: req/s %.2fx, p99 %.2fx", name, ratio(median(ra, rps),
		median(rb, rps)), ratio(median(ra, p99), median(rb, p99)))
	if median(ra, perCPU) > 0 && median(rb, perCPU) > 0 {
		fmt.Fprintf(w, ", req per CPU-s %.2fx", ratio(median(ra, perCPU), median(rb, perCPU)))
	}
	fmt.Fprintln(w)
}

// allocsOf is the median of the allocations per hit, where measured.
func allocsOf(recs []record) string {
	var with []record
	for _, r := range recs {
		if r.Allocs != nil {
			with = append(with, r)
		}
	}
	if len(with) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", median(with, func(r record) float64 { return *r.Allocs }))
}

func errorsOf(recs []record) int64 {
	var n int64
	for _, r := range recs {
		n += r.Errors
	}
	return n
}

func crossCheck(w *bufio.Writer, recs []record) {
	if len(recs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCross-check with wrk (one thread, same connections), median")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | req/s | p99 ms |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, name := range servers(recs) {
		rs := ofServer(recs, name)
		fmt.Fprintf(w, "| %s | %.0f | %.3f |\n", name, median(rs, rps), median(rs, p99))
	}
	fmt.Fprintln(w)
	ratioLine(w, recs, "agent-tcp", "nginx", "wrk agent-tcp/nginx")
	ratioLine(w, recs, "agent-tcp", "bare", "wrk agent-tcp/bare")
}

func herds(w *bufio.Writer, recs []record) {
	if len(recs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nCold herd: %d concurrent requests for one cold key, upstream latency "+
		"%.0f ms (bare: no upstream, the floor of delivering the herd)\n\n",
		recs[0].Requests+recs[0].Errors, latencyOf(recs))
	fmt.Fprintln(w, "| server | round | upstream requests | upstream ms, as measured | "+
		"200s | errors | p50 ms | max ms, from own send | slowest ms, from release |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range recs {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %d | %d | %.1f | %.1f | %.1f |\n", r.server(),
			r.Round, optional(r.Upstream), optionalMS(r.UpstreamSeen), r.Status["200"],
			r.Errors, r.LatencyMS.P50, r.LatencyMS.Max, r.SlowestMS)
	}
}

func optionalMS(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *p)
}

// latencyOf is the upstream latency the herds ran with.
func latencyOf(recs []record) float64 {
	return maxOf(recs, func(r record) float64 { return r.LatencyAdded })
}

func optional(p *int64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func memory(w *bufio.Writer, mixed, tput []record) {
	if len(mixed) == 0 {
		return
	}
	fmt.Fprintln(w, "\nResident memory (peak VmRSS sampled every 200 ms under load)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | cached keys | req/s over the keys | VmRSS MiB, key mix | "+
		"VmRSS MiB, hit rounds (max) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, name := range servers(mixed) {
		rs := ofServer(mixed, name)
		fmt.Fprintf(w, "| %s | %s | %.0f | %.1f | %.1f |\n", name, optional(rs[0].CacheEntries),
			median(rs, rps), maxOf(rs, rssMiB), maxOf(ofServer(tput, name), rssMiB))
	}
}
