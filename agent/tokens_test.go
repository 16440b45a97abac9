package agent

import (
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/internal/fakeclock"
)

func TestTokenStoreTimeline(t *testing.T) {
	clk := fakeclock.New(t0)
	s := newTokenStore(clk.Now, 3)
	short := s.issue(10 * time.Second)
	long := s.issue(time.Hour)
	steps := []struct {
		advance     time.Duration
		short, long bool
	}{
		{0, true, true},
		{9 * time.Second, true, true},
		{time.Second, false, true},
		{time.Hour, false, false},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		if s.valid(short) != st.short || s.valid(long) != st.long {
			t.Errorf("step %d: short %v long %v, want %v %v", i, s.valid(short), s.valid(long),
				st.short, st.long)
		}
	}
	s.issue(time.Minute)
	if n := s.len(); n != 1 {
		t.Errorf("after expiry and one more PUT: %d tokens held, want 1", n)
	}
}

func TestTokenStoreBoundDropsSoonestExpiring(t *testing.T) {
	clk := fakeclock.New(t0)
	s := newTokenStore(clk.Now, 3)
	toks := []string{s.issue(time.Hour), s.issue(time.Minute), s.issue(2 * time.Hour)}
	newest := s.issue(3 * time.Hour)
	want := []bool{true, false, true}
	for i, tok := range toks {
		if s.valid(tok) != want[i] {
			t.Errorf("token %d valid = %v, want %v", i, s.valid(tok), want[i])
		}
	}
	if !s.valid(newest) || s.len() != 3 {
		t.Errorf("newest valid %v, %d held; want true, 3", s.valid(newest), s.len())
	}
}
