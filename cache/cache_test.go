package cache

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
)

var t0 = time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)

func newTest(t testing.TB, entries int, maxBytes int64) (*Cache[string], *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(t0)
	c, err := New(Options[string]{
		MaxEntries: entries,
		MaxBytes:   maxBytes,
		Size:       func(_ string, v string) int64 { return int64(len(v)) },
		Now:        clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

// TestTimeline stores one entry fresh for 10 s and stale for 30 s more and
// reads it as the clock moves.
func TestTimeline(t *testing.T) {
	c, clk := newTest(t, 4, 0)
	if err := c.Set("k", "v", t0.Add(10*time.Second), t0.Add(40*time.Second)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at    time.Duration
		want  State
		value string
	}{
		{0, Fresh, "v"},
		{9 * time.Second, Fresh, "v"},
		{10 * time.Second, Stale, "v"},
		{39 * time.Second, Stale, "v"},
		{40 * time.Second, Miss, ""},
		{41 * time.Second, Miss, ""},
	}
	for _, s := range steps {
		clk.Set(t0.Add(s.at))
		v, st := c.Get("k")
		if st != s.want || v != s.value {
			t.Errorf("at +%v: got %q %v, want %q %v", s.at, v, st, s.value, s.want)
		}
	}
	if got := c.Stats(); got.Entries != 0 || got.Bytes != 0 {
		t.Errorf("after expiry: %d entries, %d bytes; want 0, 0", got.Entries, got.Bytes)
	}
}

func TestSetPastFreshIsNotStored(t *testing.T) {
	c, _ := newTest(t, 4, 0)
	if err := c.Set("k", "v", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, st := c.Get("k"); st != Miss {
		t.Fatalf("got %v, want miss", st)
	}
}

func TestStaleBeforeFreshCountsAsFresh(t *testing.T) {
	c, clk := newTest(t, 4, 0)
	_ = c.Set("k", "v", t0.Add(time.Minute), t0)
	clk.Advance(time.Minute)
	if _, st := c.Get("k"); st != Miss {
		t.Fatalf("got %v at fresh limit, want miss", st)
	}
}

func TestBounds(t *testing.T) {
	tests := []struct {
		name     string
		entries  int
		maxBytes int64
		sets     []string // key=value pairs as "k:v"
		want     []string // keys still present
		bytes    int64
	}{
		{"entry bound evicts least recent", 2, 0,
			[]string{"a:1", "b:2", "c:3"}, []string{"b", "c"}, 2},
		{"byte bound evicts until it holds", 10, 5,
			[]string{"a:xx", "b:yy", "c:zzz"}, []string{"b", "c"}, 5},
		{"replacing a key recounts its bytes", 10, 5,
			[]string{"a:xxxx", "a:y", "b:zzzz"}, []string{"a", "b"}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTest(t, tt.entries, tt.maxBytes)
			for _, kv := range tt.sets {
				k, v := kv[:1], kv[2:]
				if err := c.Set(k, v, t0.Add(time.Hour), t0.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range tt.want {
				if _, st := c.Get(k); st != Fresh {
					t.Errorf("key %q: %v, want fresh", k, st)
				}
			}
			s := c.Stats()
			if s.Entries != len(tt.want) || s.Bytes != tt.bytes {
				t.Errorf("stats %+v: want %d entries, %d bytes", s, len(tt.want), tt.bytes)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	c, _ := newTest(t, 4, 3)
	_ = c.Set("k", "ab", t0.Add(time.Hour), t0.Add(time.Hour))
	err := c.Set("k", "abcd", t0.Add(time.Hour), t0.Add(time.Hour))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, st := c.Get("k"); st != Miss {
		t.Errorf("old value still served after a too-large replacement: %v", st)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options[int]{{MaxEntries: 0}, {MaxEntries: 1, MaxBytes: -1}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestStatsCount(t *testing.T) {
	c, clk := newTest(t, 4, 0)
	_ = c.Set("k", "v", t0.Add(time.Second), t0.Add(2*time.Second))
	c.Get("k")
	c.Get("nope")
	clk.Advance(time.Second)
	c.Get("k")
	s := c.Stats()
	if s.Hits != 1 || s.Misses != 1 || s.StaleHits != 1 {
		t.Errorf("stats %+v: want 1 hit, 1 miss, 1 stale hit", s)
	}
	c.Purge()
	if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 {
		t.Errorf("after Purge: %+v", s)
	}
}

func TestConcurrentUse(t *testing.T) {
	c, _ := newTest(t, 64, 256)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := fmt.Sprint((g + i) % 100)
				_ = c.Set(k, "value", t0.Add(time.Hour), t0.Add(time.Hour))
				c.Get(k)
			}
		}()
	}
	wg.Wait()
	if s := c.Stats(); s.Bytes > 256 || s.Entries > 64 {
		t.Errorf("bounds broken: %+v", s)
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	c, _ := newTest(t, 4, 0)
	_ = c.Set("/latest/meta-data/instance-id", "i-1", t0.Add(time.Hour), t0.Add(time.Hour))
	allocs := testing.AllocsPerRun(100, func() { c.Get("/latest/meta-data/instance-id") })
	if allocs != 0 {
		t.Errorf("Get allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkGetHit(b *testing.B) {
	c, _ := newTest(b, 10000, 0)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("/latest/meta-data/item-%d", i)
		_ = c.Set(keys[i], "value", t0.Add(time.Hour), t0.Add(time.Hour))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Get(keys[i%len(keys)])
	}
}

func BenchmarkGetHitParallel(b *testing.B) {
	c, _ := newTest(b, 16, 0)
	_ = c.Set("/latest/meta-data/instance-id", "i-1", t0.Add(time.Hour), t0.Add(time.Hour))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Get("/latest/meta-data/instance-id")
		}
	})
}
