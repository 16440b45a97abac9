package load

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// HerdConfig says what a herd sends: Concurrency GETs of one path on as
// many connections, opened first and then released at once.
type HerdConfig struct {
	Target      Target
	Path        string
	Headers     []string
	Concurrency int
	Timeout     time.Duration // bounds the dials and the herd
}

// Herd sends the herd. Latency measures each answer from the moment its
// request was sent; Slowest measures the last answer from the release,
// which also counts the time the generator took to send every request.
func Herd(ctx context.Context, cfg HerdConfig) (Result, error) {
	if cfg.Concurrency < 1 || cfg.Timeout <= 0 {
		return Result{}, fmt.Errorf("herd of %d within %v: want 1 or more within more than 0",
			cfg.Concurrency, cfg.Timeout)
	}
	reqs, err := newRequests(cfg.Target, []string{cfg.Path}, cfg.Headers, 0)
	if err != nil {
		return Result{}, err
	}
	conns, err := dialAll(ctx, cfg.Target, cfg.Concurrency, cfg.Timeout)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)
	answers, elapsed := release(conns, reqs.get(0), cfg.Timeout)
	res := Result{Mode: "herd", Target: cfg.Target.String(), Paths: []string{cfg.Path},
		Connections: cfg.Concurrency, Elapsed: elapsed}
	res.total([]*tally{tallyOf(answers)})
	return res, nil
}

// tallyOf counts the answers: latencies from each send, the slowest from
// the release.
func tallyOf(answers []answer) *tally {
	t := &tally{}
	for _, a := range answers {
		if a.err != nil {
			t.fail(a.took)
			continue
		}
		t.answer(a.status, a.own)
		t.slowest = max(t.slowest, a.took)
	}
	return t
}

// answer is one herd member's outcome, timed from the release (took) and
// from the moment its request was sent (own).
type answer struct {
	status    int
	err       error
	took, own time.Duration
}

// release parks one goroutine per connection, then lets them all send req
// at once; it returns their answers and the time until the last one.
func release(conns []*conn, req []byte, timeout time.Duration) ([]answer, time.Duration) {
	answers := make([]answer, len(conns))
	gate := make(chan struct{})
	var t0 time.Time // written before gate closes, read after
	var parked, done sync.WaitGroup
	for i, c := range conns {
		parked.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			parked.Done()
			<-gate
			a := &answers[i]
			sent := time.Now()
			a.status, _, a.err = c.roundTrip(req, t0.Add(timeout))
			a.took, a.own = time.Since(t0), time.Since(sent)
		}()
	}
	parked.Wait()
	t0 = time.Now()
	close(gate)
	done.Wait()
	return answers, time.Since(t0)
}
