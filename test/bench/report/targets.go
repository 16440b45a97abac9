package main

import (
	"bufio"
	"fmt"
	"math"
)

// targets checks the numbers against the goals of issue 8.
func targets(w *bufio.Writer, recs []record) {
	tput := byPhase(recs, "tput")
	fmt.Fprintln(w, "\nTargets")
	fmt.Fprintln(w)
	agent, nginx := saturated(tput, "agent-tcp"), saturated(tput, "nginx")
	bare, unix := saturated(tput, "bare"), saturated(tput, "agent-unix")
	if len(agent) > 0 && len(nginx) > 0 {
		check(w, "hit req/s agent-tcp >= 1.0x nginx", ratio(median(agent, rps),
			median(nginx, rps)) >= 1.0, fmt.Sprintf("%.2fx", ratio(median(agent, rps),
			median(nginx, rps))))
		check(w, "hit p99 agent-tcp <= nginx", median(agent, p99) <= median(nginx, p99),
			fmt.Sprintf("%.3f ms vs %.3f ms", median(agent, p99), median(nginx, p99)))
	}
	if len(agent) > 0 && len(bare) > 0 {
		r := ratio(median(agent, rps), median(bare, rps))
		check(w, "hit req/s agent-tcp >= 0.85x bare", r >= 0.85, fmt.Sprintf("%.2fx", r))
	}
	if len(agent) > 0 && len(unix) > 0 {
		r := ratio(median(unix, rps), median(agent, rps))
		check(w, "hit req/s agent-unix >= agent-tcp", r >= 1.0, fmt.Sprintf("%.2fx", r))
	}
	herdTarget(w, ofServer(byPhase(recs, "herd"), "agent"))
	memoryTarget(w, byPhase(recs, "mixed"))
}

// herdTarget checks the agent's herds: one upstream request each, and
// every answer within upstream's latency plus 10 ms of its own send, the
// latency being what the agent measured of its upstream request (upstream
// is the simulator, which shares a core with the load generator, so it
// can take longer than it was told to). Two stricter readings follow:
// against the latency the simulator was told to add, and from the release
// of the whole herd.
func herdTarget(w *bufio.Writer, recs []record) {
	if len(recs) == 0 {
		return
	}
	ok, okNominal, okRelease := true, true, true
	worstUp, worstOwn, worstMargin, worst := int64(0), 0.0, math.Inf(-1), 0.0
	for _, r := range recs {
		up := int64(-1)
		if r.Upstream != nil {
			up = *r.Upstream
		}
		good := up == 1 && r.Errors == 0 && r.Status["200"] == r.Requests
		margin := r.LatencyMS.Max - r.upstreamMS()
		ok = ok && good && margin <= 10
		okNominal = okNominal && good && r.LatencyMS.Max <= r.LatencyAdded+10
		okRelease = okRelease && good && r.SlowestMS <= r.LatencyAdded+10
		worstUp, worstMargin = max(worstUp, up), max(worstMargin, margin)
		worst, worstOwn = max(worst, r.SlowestMS), max(worstOwn, r.LatencyMS.Max)
	}
	check(w, "cold herd: 1 upstream request, all answers within upstream's latency + 10 ms "+
		"of their send", ok, fmt.Sprintf("%d rounds: at most %d upstream, at most %.1f ms "+
		"over upstream's latency", len(recs), worstUp, worstMargin))
	bound := fmt.Sprintf("%.0f ms", recs[0].LatencyAdded+10)
	check(w, "cold herd, stricter: all answers within "+bound+" of their send", okNominal,
		fmt.Sprintf("slowest %.1f ms", worstOwn))
	check(w, "cold herd, stricter: all answers within "+bound+" of the release", okRelease,
		fmt.Sprintf("slowest %.1f ms", worst))
}

func memoryTarget(w *bufio.Writer, mixed []record) {
	agent, bare := ofServer(mixed, "agent-tcp"), ofServer(mixed, "bare")
	if len(agent) == 0 || len(bare) == 0 {
		return
	}
	r := ratio(maxOf(agent, rssMiB), maxOf(bare, rssMiB))
	check(w, "VmRSS agent <= 2x bare with the keys cached", r <= 2,
		fmt.Sprintf("%.2fx (%.1f vs %.1f MiB)", r, maxOf(agent, rssMiB), maxOf(bare, rssMiB)))
}

func check(w *bufio.Writer, what string, ok bool, got string) {
	verdict := "MET"
	if !ok {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "- %s: %s (%s)\n", what, verdict, got)
}
