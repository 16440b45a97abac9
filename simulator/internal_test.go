package simulator

import (
	"strings"
	"testing"
	"time"
)

func TestTokenStorePrunesAndCaps(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := newTokenStore(3)
	a := ts.issue(now, 10*time.Second)
	b := ts.issue(now, 30*time.Second)
	c := ts.issue(now, 20*time.Second)
	d := ts.issue(now, 40*time.Second) // full: a, the soonest to expire, goes
	steps := []struct {
		name  string
		at    time.Duration
		tok   string
		valid bool
	}{
		{"evicted when full", 0, a, false},
		{"kept b", 0, b, true},
		{"kept c", 0, c, true},
		{"kept d", 0, d, true},
		{"c expires at +20s", 20 * time.Second, c, false},
		{"b still valid at +20s", 20 * time.Second, b, true},
	}
	for _, st := range steps {
		if got := ts.valid(st.tok, now.Add(st.at)); got != st.valid {
			t.Errorf("%s: valid = %v, want %v", st.name, got, st.valid)
		}
	}
	if n := ts.len(); n != 3 {
		t.Fatalf("store holds %d tokens, want 3", n)
	}
	ts.issue(now.Add(35*time.Second), time.Second) // prunes b and c
	if n := ts.len(); n != 2 {
		t.Errorf("after expiry pruning the store holds %d tokens, want 2", n)
	}
	ts.revoke()
	if n := ts.len(); n != 0 || ts.valid(d, now) {
		t.Errorf("after revoke: %d tokens, d valid %v", n, ts.valid(d, now))
	}
}

func TestTokenStoreBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := newTokenStore(100)
	for i := range 1000 {
		ts.issue(now, time.Duration(i+1)*time.Second)
	}
	if n, q := ts.len(), len(ts.queue); n != 100 || q != 100 {
		t.Errorf("map %d, queue %d, want 100 each", n, q)
	}
}

func TestParseTTL(t *testing.T) {
	tests := []struct {
		vals []string
		want time.Duration
		ok   bool
	}{
		{[]string{"1"}, time.Second, true},
		{[]string{"21600"}, 6 * time.Hour, true},
		{[]string{"0021600"}, 6 * time.Hour, true},
		{nil, 0, false},
		{[]string{"1", "1"}, 0, false},
		{[]string{""}, 0, false},
		{[]string{" 5"}, 0, false},
		{[]string{"5s"}, 0, false},
		{[]string{"0x10"}, 0, false},
		{[]string{"1e3"}, 0, false},
		{[]string{"21601"}, 0, false},
	}
	for _, tt := range tests {
		got, err := parseTTL(tt.vals)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseTTL(%q) = %v, %v; want %v, ok %v", tt.vals, got, err, tt.want, tt.ok)
		}
	}
}

func TestCleanPathAndMatch(t *testing.T) {
	tests := []struct {
		path, prefix string
		want         bool
	}{
		{"/latest/meta-data", "/latest/meta-data/", true},
		{"/latest/meta-data/", "/latest/meta-data/", true},
		{"/latest/meta-data-x", "/latest/meta-data/", false},
		{"/latest//meta-data/mac", "/latest/meta-data/mac", true},
		{"/latest/a/../meta-data/", "/latest/meta-data/", true},
		{"/anything", "", true},
	}
	for _, tt := range tests {
		if got := matchPrefix(cleanPath(tt.path), tt.prefix); got != tt.want {
			t.Errorf("match(%q -> %q, %q) = %v, want %v", tt.path, cleanPath(tt.path),
				tt.prefix, got, tt.want)
		}
	}
}

// FuzzLookup checks that only canonical paths are ever answered.
func FuzzLookup(f *testing.F) {
	seeds := []string{"/", "/latest/meta-data/", "//", "/latest/meta-data/../meta-data/mac",
		"/latest/meta-data%2Fmac", "/latest/meta-data/Ram/security-credentials/EcsRamRoleDemo",
		"/latest/meta-data/./mac", "/latest/meta-data//mac", "/latest/meta-data/mac/"}
	for _, s := range seeds {
		f.Add(s)
	}
	root := buildTree(state{inst: DefaultInstance(), publicIP: "192.0.2.1"})
	f.Fuzz(func(t *testing.T, p string) {
		n, ok := root.lookup(p)
		if !ok {
			return
		}
		if n == nil {
			t.Fatalf("lookup(%q) found a nil node", p)
		}
		segs := strings.Split(strings.Trim(p, "/"), "/")
		for _, s := range segs {
			if (s == "" && p != "/") || s == "." || s == ".." ||
				strings.Contains(strings.ToLower(s), "%2f") {
				t.Fatalf("lookup(%q) answered a non-canonical path", p)
			}
		}
	})
}

// FuzzParseTTL checks that only plain decimal seconds in range pass.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"1", "21600", "0", "-1", "1.5", "abc", "21601", " 7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := parseTTL([]string{v})
		if err != nil {
			return
		}
		if strings.Trim(v, "0123456789") != "" || d < time.Second || d > 6*time.Hour {
			t.Fatalf("parseTTL(%q) accepted %v", v, d)
		}
	})
}
