package cache

import (
	"testing"
	"time"
	"unsafe"
)

// steppedClock is what time.Now returns on a machine whose system clock
// was stepped (NTP at boot, date -s) while the monotonic clock ran on:
// readings with a monotonic part that advances by elapsed and a wall part
// moved by step too.
type steppedClock struct {
	base          time.Time // a time.Now reading: it carries a monotonic part
	elapsed, step time.Duration
}

func (c *steppedClock) now() time.Time {
	t := c.base.Add(c.elapsed)
	// time.Time is {wall uint64; ext int64; loc *Location}; with a
	// monotonic reading, wall holds the seconds since 1885 in bits 30-62.
	p := (*struct {
		wall uint64
		ext  int64
		loc  *time.Location
	})(unsafe.Pointer(&t))
	p.wall += uint64(int64(c.step/time.Second)) << 30
	return t
}

// newSteppedClock returns a clock at elapsed 0, step 0, or skips the test
// where time.Time is not laid out as now assumes.
func newSteppedClock(t *testing.T) *steppedClock {
	c := &steppedClock{base: time.Now()}
	c.step = time.Hour
	moved := c.now()
	c.step = 0
	if moved.Sub(c.base) != 0 || moved.Round(0).Sub(c.base.Round(0)) != time.Hour {
		t.Skip("time.Time's layout is not the one this test steps the wall clock in")
	}
	return c
}

// TestWallClockStep checks that a step of the system clock moves
// deadlines given as wall times (a credentials Expiration) and leaves
// deadlines from time.Now plus a lifetime alone.
func TestWallClockStep(t *testing.T) {
	for _, step := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		clk := newSteppedClock(t)
		c, err := New(Options[string]{MaxEntries: 10, Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		expires := clk.now().Round(0).Add(time.Hour) // parsed: wall time only
		lifetime := clk.now().Add(time.Minute)       // monotonic
		if err := c.Set("creds", "v", expires, expires); err != nil {
			t.Fatal(err)
		}
		if err := c.Set("id", "v", lifetime, lifetime); err != nil {
			t.Fatal(err)
		}
		clk.step, clk.elapsed = step, 30*time.Second
		wantCreds := Miss // stepped 2 h forward: past the Expiration
		if step < 0 {
			wantCreds = Fresh // 2 h back: the Expiration is 3 h away
		}
		if _, st := c.Get("creds"); st != wantCreds {
			t.Errorf("step %v: credentials %v, want %v", step, st, wantCreds)
		}
		if _, st := c.Get("id"); st != Fresh {
			t.Errorf("step %v: a 1 min lifetime 30 s in is %v, want fresh", step, st)
		}
	}
}
