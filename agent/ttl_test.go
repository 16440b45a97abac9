package agent

import (
	"testing"
	"time"
)

func TestLifetimeByKind(t *testing.T) {
	now := t0
	creds := func(exp time.Time) *response {
		return newResponse(200, nil, []byte(`{"Code":"Success","Expiration":"`+
			exp.Format(time.RFC3339)+`"}`))
	}
	ok200 := newResponse(200, nil, []byte("v"))
	tests := []struct {
		name      string
		path      string
		resp      *response
		cached    bool
		fresh     time.Duration
		staleLeft time.Duration // stale limit minus fresh limit
	}{
		{"fixed for life", "/latest/meta-data/instance-id", ok200, true, longTTL, staleFor},
		{"fixed, versioned root", "/2016-01-01/meta-data/region-id", ok200, true, longTTL,
			staleFor},
		{"changes at run time", "/latest/meta-data/public-ipv4", ok200, true, shortTTL, staleFor},
		{"NIC items", "/latest/meta-data/network/interfaces/macs/", ok200, true, shortTTL,
			staleFor},
		{"other items", "/latest/meta-data/hostname", ok200, true, defaultTTL, staleFor},
		{"user data", "/latest/user-data", ok200, true, defaultTTL, staleFor},
		{"operator rule", "/latest/meta-data/hostname/x", ok200, false, 0, 0},
		{"operator rule overrides a default", "/latest/meta-data/eipv4", ok200, true,
			time.Minute, staleFor},
		{"spot termination never", "/latest/meta-data/instance/spot/termination-time",
			ok200, false, 0, 0},
		{"spot termination 404 never", "/latest/meta-data/instance/spot/termination-time",
			newResponse(404, nil, nil), false, 0, 0},
		{"404 briefly", "/latest/meta-data/nosuch", newResponse(404, nil, nil),
			true, notFoundTTL, 0},
		{"5xx never", "/latest/meta-data/hostname", newResponse(500, nil, nil), false, 0, 0},
		{"429 never", "/latest/meta-data/hostname", newResponse(429, nil, nil), false, 0, 0},
		{"401 never", "/latest/meta-data/hostname", newResponse(401, nil, nil), false, 0, 0},
		{"role listing", "/latest/meta-data/ram/security-credentials/", ok200, true, shortTTL,
			staleFor},
		{"credentials until 20 min before expiry",
			"/latest/meta-data/ram/security-credentials/R", creds(now.Add(6 * time.Hour)),
			true, 6*time.Hour - 20*time.Minute, 20 * time.Minute},
		{"credentials, capital R", "/latest/meta-data/Ram/security-credentials/R",
			creds(now.Add(6 * time.Hour)), true, 6*time.Hour - 20*time.Minute, 20 * time.Minute},
		{"credentials inside the window: retried in 30 s",
			"/latest/meta-data/ram/security-credentials/R", creds(now.Add(10 * time.Minute)),
			true, 30 * time.Second, 10*time.Minute - 30*time.Second},
		{"credentials expiring within the retry: never past Expiration",
			"/latest/meta-data/ram/security-credentials/R", creds(now.Add(10 * time.Second)),
			true, 10 * time.Second, 0},
		{"expired credentials never", "/latest/meta-data/ram/security-credentials/R",
			creds(now.Add(-time.Second)), false, 0, 0},
		{"credentials without Expiration never", "/latest/meta-data/ram/security-credentials/R",
			newResponse(200, nil, []byte(`{"Code":"Success"}`)), false, 0, 0},
	}
	cfg := Defaults()
	cfg.TTLRules = []TTLRule{{"hostname/", 0}, {"EIPv4", time.Minute}}
	p := newTTLPolicy(cfg)
	p.creds.jitter = 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.lifetime(tt.path, tt.resp, now)
			if got.store != tt.cached {
				t.Fatalf("cached = %v, want %v", got.store, tt.cached)
			}
			if !got.store {
				return
			}
			if d := got.fresh.Sub(now); d != tt.fresh {
				t.Errorf("fresh for %v, want %v", d, tt.fresh)
			}
			if d := max(got.stale.Sub(got.fresh), 0); d != tt.staleLeft {
				t.Errorf("stale for %v more, want %v", d, tt.staleLeft)
			}
		})
	}
}

func TestParseTTLRule(t *testing.T) {
	tests := []struct {
		in   string
		want TTLRule
		ok   bool
	}{
		{"public-ipv4=30s", TTLRule{"public-ipv4", 30 * time.Second}, true},
		{"/Network/=0", TTLRule{"network/", 0}, true},
		{"hostname", TTLRule{}, false},
		{"=1m", TTLRule{}, false},
		{"x=-1s", TTLRule{}, false},
		{"x=25h", TTLRule{}, false},
		{"x=soon", TTLRule{}, false},
		{"a b=1m", TTLRule{}, false},
	}
	for _, tt := range tests {
		got, err := ParseTTLRule(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseTTLRule(%q) = %+v, %v", tt.in, got, err)
		}
	}
}
