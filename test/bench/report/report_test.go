package main

import (
	"bytes"
	"strings"
	"testing"
)

// Pieces of the sample lines, kept short.
const (
	lat     = `"latency_ms":{"p50":0.5,"p99":`
	busy20  = `"server":{"cpu_share":1,"rss_max_bytes":20971520,"requests_per_cpu_s":`
	herd200 = `"requests":1000,"status":{"200":1000},`
	up50    = `"upstream_requests":1,"upstream_latency_ms":50}`
)

// sample is what run.sh collects, cut down: 3 agent rounds, 1 of nginx
// and bare, 2 over the Unix socket (one disturbed), herds and memory.
var sample = strings.Join([]string{
	`{"label":"tput:agent-tcp","round":1,"allocs_per_request":17.2,"rps":100,` +
		lat + `2,"p99.9":3},` + busy20 + `100}}`,
	`{"label":"tput:agent-tcp","round":2,"rps":120,` + lat + `1,"p99.9":3},` + busy20 + `120}}`,
	`{"label":"tput:agent-tcp","round":3,"rps":110,` + lat + `1.5,"p99.9":3},` +
		busy20 + `110}}`,
	`{"label":"tput:nginx","round":1,"rps":100,` + lat + `2,"p99.9":3}}`,
	`{"label":"tput:bare","round":1,"rps":200,` + lat + `1,"p99.9":3}}`,
	`{"label":"tput:agent-unix","round":1,"rps":121,` + lat + `1,"p99.9":3},` +
		`"server":{"cpu_share":0.95}}`,
	`{"label":"tput:agent-unix","round":2,"rps":20,` + lat + `9,"p99.9":30},` +
		`"server":{"cpu_share":0.3}}`,
	`{"label":"herd:agent","round":1,` + herd200 +
		`"latency_ms":{"p50":52,"max":54},"slowest_ms":61,"upstream_seen_ms":43.5,` + up50,
	`{"label":"herd:agent","round":2,` + herd200 +
		`"latency_ms":{"p50":55,"max":59},"slowest_ms":60,"upstream_seen_ms":52.5,` + up50,
	`{"label":"herd:nginx","round":1,` + herd200 + `"slowest_ms":560,` + up50,
	`{"label":"mixed:agent-tcp","rps":90,"server":{"rss_max_bytes":31457280},` +
		`"cache_entries":10007}`,
	`{"label":"mixed:bare","rps":90,"server":{"rss_max_bytes":10485760},"cache_entries":null}`,
	"",
}, "\n")

func TestReport(t *testing.T) {
	var out bytes.Buffer
	if err := run(strings.NewReader(sample), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| agent-tcp | 3/3 | 110 (100-120) | 0.500 | 1.500 (1.00-2.00) |",
		"agent-tcp/nginx: req/s 1.10x, p99 0.75x\n",
		"| 17.2 | 0 |",
		"| nginx | 1/1 | 100 (100-100) | 0.500 | 2.000 (2.00-2.00) | 3.000 | 0% | 0% | 0 | - | 0 |",
		"| agent-unix | 1/2 | 121 (121-121) |",
		"agent-unix/agent-tcp: req/s 1.10x",
		"| agent | 1 | 1 | 43.5 | 1000 | 0 | 52.0 | 54.0 | 61.0 |",
		"| nginx | 1 | 1 | - | 1000 | 0 |",
		"| agent-tcp | 10007 | 90 | 30.0 | 20.0 |",
		"hit req/s agent-tcp >= 0.85x bare: MISSED (0.55x)",
		"hit p99 agent-tcp <= nginx: MET",
		"all answers within upstream's latency + 10 ms of their send: MISSED " +
			"(2 rounds: at most 1 upstream, at most 10.5 ms over upstream's latency)",
		"stricter: all answers within 60 ms of their send: MET (slowest 59.0 ms)",
		"stricter: all answers within 60 ms of the release: MISSED (slowest 61.0 ms)",
		"VmRSS agent <= 2x bare with the keys cached: MISSED (3.00x",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReportRejectsBadLines(t *testing.T) {
	if err := run(strings.NewReader("{\"label\":\n"), &bytes.Buffer{}); err == nil {
		t.Error("no error for a broken line")
	}
}
