package simulator_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

func TestThrottle(t *testing.T) {
	e := start(t, simulator.Options{RateLimit: 2})
	steps := []struct {
		advance time.Duration
		path    string
		want    int
	}{
		{0, md + "mac", 200}, // burst defaults to int(RateLimit) = 2
		{0, md + "mac", 200},
		{0, md + "mac", 429},
		{0, "/latest/api/token", 429},
		{0, "/_simulator/stats", 200}, // never throttled
		{499 * time.Millisecond, md + "mac", 429},
		{time.Millisecond, md + "mac", 200}, // one token back after 500ms
		{0, md + "mac", 429},
		{10 * time.Second, md + "mac", 200}, // the bucket refills to the burst
		{0, md + "mac", 200},
		{0, md + "mac", 429},
	}
	throttled := 0
	for i, st := range steps {
		e.clock.Advance(st.advance)
		r := e.get(st.path)
		if r.status != st.want {
			t.Fatalf("step %d (%s): status %d, want %d", i, st.path, r.status, st.want)
		}
		if st.want == 429 {
			throttled++
		}
	}
	if got := e.sim.Stats().Throttled; got != throttled {
		t.Errorf("Stats.Throttled = %d, want %d", got, throttled)
	}
}

func TestSetRateLimit(t *testing.T) {
	e := start(t, simulator.Options{})
	tests := []struct {
		rps   float64
		burst int
		want  []int // statuses of back-to-back requests
	}{
		{0, 0, []int{200, 200, 200, 200}},
		{1, 3, []int{200, 200, 200, 429}},
		{0.5, 0, []int{200, 429}},
		{-1, 0, []int{200, 200, 200}},
	}
	for _, tt := range tests {
		e.sim.SetRateLimit(tt.rps, tt.burst)
		for i, want := range tt.want {
			if r := e.get(md + "mac"); r.status != want {
				t.Errorf("rps %v burst %d request %d: %d, want %d",
					tt.rps, tt.burst, i, r.status, want)
			}
		}
	}
}

func TestSpotTermination(t *testing.T) {
	e := start(t, simulator.Options{})
	p := md + "instance/spot/termination-time"
	cst := time.FixedZone("CST", 8*3600)
	steps := []struct {
		set     time.Time
		want    int
		body    string
		listing bool // instance/ lists spot/
	}{
		{time.Time{}, 404, "", false},
		{time.Date(2026, 12, 5, 1, 3, 0, 0, cst), 200, "2026-12-04T17:03:00Z", true},
		{time.Date(2026, 12, 4, 17, 3, 0, 900, time.UTC), 200, "2026-12-04T17:03:00Z", true},
		{time.Time{}, 404, "", false},
	}
	for i, st := range steps {
		e.sim.SetSpotTermination(st.set)
		r := e.get(p)
		if r.status != st.want || (st.body != "" && r.body != st.body) {
			t.Errorf("step %d: %d %q, want %d %q", i, r.status, r.body, st.want, st.body)
		}
		listing := e.get(md + "instance/").body
		if got := strings.Contains(listing, "spot/"); got != st.listing {
			t.Errorf("step %d: listing %q, spot/ listed %v, want %v", i, listing, got, st.listing)
		}
	}
}

func TestPublicIP(t *testing.T) {
	e := start(t, simulator.Options{})
	steps := []struct {
		bind string
		want int
	}{
		{"", 404},
		{"203.0.113.7", 200},
		{"", 404},
		{"47.98.116.23", 200},
	}
	for _, st := range steps {
		e.sim.BindPublicIP(st.bind)
		for _, item := range []string{"public-ipv4", "eipv4"} {
			r := e.get(md + item)
			if r.status != st.want || (st.want == 200 && r.body != st.bind) {
				t.Errorf("bind %q: %s answered %d %q", st.bind, item, r.status, r.body)
			}
			listed := strings.Contains("\n"+e.get(md).body+"\n", "\n"+item+"\n")
			if listed != (st.want == 200) {
				t.Errorf("bind %q: %s listed = %v", st.bind, item, listed)
			}
		}
	}
}

func TestStats(t *testing.T) {
	e := start(t, simulator.Options{})
	tok := e.token("60")
	e.do(http.MethodPut, "/latest/api/token")                               // 400
	e.do(http.MethodPut, "/latest/api/token", "X-Forwarded-For", "1.2.3.4") // 403
	e.get("/latest/api/token", tokenName, tok)                              // 405, not a PUT
	e.get(md+"Ram/security-credentials/"+role+"?", "Forwarded", "for=1.2.3.4")
	e.get(md+"instance-id", tokenName, tok, "X-Real-IP", "1.2.3.4")
	e.get(md+"instance-id", tokenName, "bogus", "Via", "1.1 proxy")
	e.do(http.MethodHead, md+"instance-id")
	e.get("/_simulator/stats")
	want := simulator.Stats{
		Requests: map[string]int{
			"PUT /latest/api/token":                          3,
			"GET /latest/api/token":                          1,
			"GET " + md + "Ram/security-credentials/" + role: 1,
			"GET " + md + "instance-id":                      2,
			"HEAD " + md + "instance-id":                     1,
		},
		TokenPUTs:    3,
		TokensIssued: 1,
		Forwarded:    4,
		Tokenless:    2,
		Unauthorized: 1,
	}
	got := e.sim.Stats()
	if !statsEqual(got, want) {
		t.Fatalf("stats\n got %+v\nwant %+v", got, want)
	}
	got.Requests["GET /x"] = 9
	if _, leaked := e.sim.Stats().Requests["GET /x"]; leaked {
		t.Error("Stats returned the live map, not a copy")
	}
	e.sim.ResetStats()
	if got := e.sim.Stats(); !statsEqual(got, simulator.Stats{Requests: map[string]int{}}) {
		t.Errorf("after ResetStats: %+v", got)
	}
}

func statsEqual(a, b simulator.Stats) bool {
	type counts struct{ puts, issued, fwd, tokenless, throttled, unauth int }
	ca := counts{a.TokenPUTs, a.TokensIssued, a.Forwarded, a.Tokenless, a.Throttled,
		a.Unauthorized}
	cb := counts{b.TokenPUTs, b.TokensIssued, b.Forwarded, b.Tokenless, b.Throttled,
		b.Unauthorized}
	return ca == cb && maps.Equal(a.Requests, b.Requests)
}

// ctl calls the control surface and returns status and body.
func (e *env) ctl(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.sim.URL()+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestControlSurface(t *testing.T) {
	e := start(t, simulator.Options{RateLimit: 1, Burst: 1})
	first, _ := e.sim.Credentials(role)
	tests := []struct {
		name, method, path, body string
		want                     int
		check                    func() bool
	}{
		{"set fault", "POST", "/_simulator/faults?prefix=" + md + "mac",
			`{"latency":"0s","status":503,"hang":false,"drop":false,"count":2}`, 204,
			func() bool { return e.sim.Faults()[md+"mac"].Status == 503 }},
		{"list faults", "GET", "/_simulator/faults", "", 200, nil},
		{"set fault for all", "POST", "/_simulator/faults", `{"status":500}`, 204,
			func() bool { return e.sim.Faults()[""].Status == 500 }},
		{"clear one fault", "DELETE", "/_simulator/faults?prefix=", "", 204,
			func() bool { _, ok := e.sim.Faults()[""]; return !ok && len(e.sim.Faults()) == 1 }},
		{"clear faults", "DELETE", "/_simulator/faults", "", 204,
			func() bool { return len(e.sim.Faults()) == 0 }},
		{"bad fault field", "POST", "/_simulator/faults", `{"sleep":"1s"}`, 400, nil},
		{"bad fault latency", "POST", "/_simulator/faults", `{"latency":"x"}`, 400, nil},
		{"bad fault status", "POST", "/_simulator/faults", `{"status":700}`, 400, nil},
		{"empty fault body", "POST", "/_simulator/faults", "", 400, nil},
		{"rotate", "POST", "/_simulator/rotate", "", 204, func() bool {
			c, _ := e.sim.Credentials(role)
			return distinct(c, first)
		}},
		{"spot", "POST", "/_simulator/spot-termination?time=2026-12-04T17:03:00Z", "", 204,
			func() bool {
				v, ok := e.sim.Value(md + "instance/spot/termination-time")
				return ok && string(v) == "2026-12-04T17:03:00Z"
			}},
		{"spot clear", "POST", "/_simulator/spot-termination", "", 204, func() bool {
			_, ok := e.sim.Value(md + "instance/spot/termination-time")
			return !ok
		}},
		{"bad spot", "POST", "/_simulator/spot-termination?time=tomorrow", "", 400, nil},
		{"unbind ip", "POST", "/_simulator/public-ip?ip=", "", 204, func() bool {
			_, ok := e.sim.Value(md + "eipv4")
			return !ok
		}},
		{"bind ip", "POST", "/_simulator/public-ip?ip=198.51.100.9", "", 204, func() bool {
			v, _ := e.sim.Value(md + "eipv4")
			return string(v) == "198.51.100.9"
		}},
		{"bad ip", "POST", "/_simulator/public-ip?ip=1.2.3", "", 400, nil},
		{"bad hardened", "POST", "/_simulator/hardened-only?on=maybe", "", 400, nil},
		{"bad rate", "POST", "/_simulator/rate-limit?rps=-2", "", 400, nil},
		{"bad burst", "POST", "/_simulator/rate-limit?rps=2&burst=x", "", 400, nil},
		{"wrong method", "POST", "/_simulator/stats", "", 405, nil},
		{"unknown path", "GET", "/_simulator/nothing", "", 404, nil},
		{"control not counted", "GET", "/_simulator/stats", "", 200, func() bool {
			return maps.Equal(e.sim.Stats().Requests, map[string]int{"GET " + md + "mac": 1})
		}},
		{"reset stats", "POST", "/_simulator/reset-stats", "", 204, func() bool {
			return len(e.sim.Stats().Requests) == 0
		}},
	}
	e.get(md + "mac") // one counted request, uses the only rate token
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.ctl(tt.method, tt.path, tt.body)
			if status != tt.want {
				t.Fatalf("status %d (%q), want %d", status, body, tt.want)
			}
			if tt.check != nil && !tt.check() {
				t.Error("the change did not take effect")
			}
		})
	}
}

func TestControlModes(t *testing.T) {
	e := start(t, simulator.Options{})
	tok := e.token("60")
	steps := []struct {
		ctl     string
		path    string
		headers []string
		want    int
	}{
		{"/_simulator/hardened-only?on=true", md + "mac", nil, 401},
		{"/_simulator/hardened-only?on=false", md + "mac", nil, 200},
		{"/_simulator/revoke-tokens", md + "mac", []string{tokenName, tok}, 401},
		{"/_simulator/rate-limit?rps=1&burst=1", md + "mac", nil, 200},
		{"", md + "mac", nil, 429},
		{"/_simulator/rate-limit?rps=0", md + "mac", nil, 200},
	}
	for i, st := range steps {
		if st.ctl != "" {
			if status, body := e.ctl("POST", st.ctl, ""); status != 204 {
				t.Fatalf("step %d: %s: %d %q", i, st.ctl, status, body)
			}
		}
		if r := e.get(st.path, st.headers...); r.status != st.want {
			t.Errorf("step %d: status %d, want %d", i, r.status, st.want)
		}
	}
}

func TestControlStatsJSON(t *testing.T) {
	e := start(t, simulator.Options{})
	e.token("60")
	e.get(md+"mac", "X-Forwarded-For", "1.2.3.4")
	status, body := e.ctl("GET", "/_simulator/stats", "")
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); status != 200 || err != nil {
		t.Fatalf("stats: %d %q %v", status, body, err)
	}
	for _, k := range []string{"requests", "token_puts", "tokens_issued", "forwarded",
		"tokenless", "throttled", "unauthorized"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("stats JSON lacks %q: %s", k, body)
		}
	}
	var st simulator.Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil || !statsEqual(st, e.sim.Stats()) {
		t.Errorf("stats JSON %s decodes to %+v, want %+v", body, st, e.sim.Stats())
	}
}
