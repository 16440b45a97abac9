package main

import (
	"fmt"
	"slices"
)

// median of the values pick takes from recs; 0 when there are none.
func median(recs []record, pick func(record) float64) float64 {
	if len(recs) == 0 {
		return 0
	}
	v := make([]float64, len(recs))
	for i, r := range recs {
		v[i] = pick(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// spread is "min-max" of the values, for the reader to judge the noise.
func spread(recs []record, pick func(record) float64, format string) string {
	if len(recs) == 0 {
		return "-"
	}
	lo, hi := pick(recs[0]), pick(recs[0])
	for _, r := range recs[1:] {
		lo, hi = min(lo, pick(r)), max(hi, pick(r))
	}
	return fmt.Sprintf(format+"-"+format, lo, hi)
}

func rps(r record) float64  { return r.RPS }
func p50(r record) float64  { return r.LatencyMS.P50 }
func p99(r record) float64  { return r.LatencyMS.P99 }
func p999(r record) float64 { return r.LatencyMS.P999 }

func cpuShare(r record) float64 {
	if r.Server == nil {
		return 0
	}
	return r.Server.CPUShare
}

func clientShare(r record) float64 { return r.ClientShare }

func perCPU(r record) float64 {
	if r.Server == nil {
		return 0
	}
	return r.Server.PerCPUSec
}

func rssMiB(r record) float64 {
	if r.Server == nil {
		return 0
	}
	return float64(r.Server.RSSMaxB) / (1 << 20)
}

func maxOf(recs []record, pick func(record) float64) float64 {
	m := 0.0
	for _, r := range recs {
		m = max(m, pick(r))
	}
	return m
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
