package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config says what a closed-loop run sends: each connection sends its next
// request as soon as the last one is answered.
type Config struct {
	Target      Target
	Paths       []string // cycled through; "{seq}" in one is a sequence number
	Headers     []string // "Name: value"
	Keys        int      // sequence numbers cycle below Keys; 0: no bound
	Connections int
	Duration    time.Duration // measured time; 0: until Requests are answered
	Requests    int64         // measured requests; 0: until Duration is over
	Warmup      time.Duration // sent first and not measured
	Timeout     time.Duration // bounds each dial and each request
	Watch       []int         // PIDs whose CPU time and memory are reported
}

func (c Config) validate() error {
	switch {
	case c.Connections < 1:
		return fmt.Errorf("connections %d: want 1 or more", c.Connections)
	case c.Duration <= 0 && c.Requests <= 0:
		return errors.New("neither a duration nor a request count: the run would not end")
	case c.Duration < 0 || c.Requests < 0 || c.Warmup < 0:
		return errors.New("duration, requests and warm-up must not be negative")
	case c.Timeout <= 0:
		return fmt.Errorf("timeout %v: want more than 0", c.Timeout)
	}
	return nil
}

// run is the shared state of one closed-loop run.
type run struct {
	cfg   Config
	reqs  *requests
	begin time.Time // end of the warm-up
	end   time.Time // zero: no time limit
	left  atomic.Int64
	stop  atomic.Bool
	next  atomic.Int64 // which request of the path cycle goes next, over all connections
}

// Run drives cfg.Target until the duration is over or the requests are
// answered, or ctx is done, and returns what it measured.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	reqs, err := newRequests(cfg.Target, cfg.Paths, cfg.Headers, cfg.Keys)
	if err != nil {
		return Result{}, err
	}
	conns, err := dialAll(ctx, cfg.Target, cfg.Connections, cfg.Timeout)
	if err != nil {
		return Result{}, err
	}
	r := &run{cfg: cfg, reqs: reqs, begin: time.Now().Add(cfg.Warmup)}
	if cfg.Duration > 0 {
		r.end = r.begin.Add(cfg.Duration)
	}
	r.left.Store(cfg.Requests)
	return r.drive(ctx, conns)
}

func (r *run) drive(ctx context.Context, conns []*conn) (Result, error) {
	stopWatch := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopWatch()
	w, err := r.watchFromBegin()
	if err != nil {
		closeAll(conns)
		return Result{}, err
	}
	tallies := make([]*tally, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		tallies[i] = &tally{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, c, tallies[i])
		}()
	}
	wg.Wait()
	return r.result(tallies, w)
}

// watchFromBegin starts the watch of the server processes and of the
// generator when the warm-up ends, and returns the func that ends it.
func (r *run) watchFromBegin() (func() (*Usage, time.Duration, error), error) {
	for _, pid := range r.cfg.Watch {
		if _, err := procCPU(pid); err != nil {
			return nil, err
		}
	}
	type started struct {
		w   *watch
		err error
	}
	ch := make(chan started, 1)
	go func() {
		time.Sleep(time.Until(r.begin))
		w, err := startWatch(r.cfg.Watch)
		ch <- started{w, err}
	}()
	return func() (*Usage, time.Duration, error) {
		s := <-ch
		if s.err != nil {
			return nil, 0, s.err
		}
		return s.w.finish()
	}, nil
}

func (r *run) result(tallies []*tally,
	finish func() (*Usage, time.Duration, error)) (Result, error) {
	res := Result{Mode: "load", Target: r.cfg.Target.String(), Paths: r.cfg.Paths,
		Connections: r.cfg.Connections, Elapsed: max(time.Since(r.begin), 0)}
	res.total(tallies)
	u, self, err := finish()
	if err != nil {
		return Result{}, err
	}
	res.Server, res.ClientCPU = u, self
	return res, nil
}

// loop sends requests on c, redialling when the server closes it, until
// the run is over.
func (r *run) loop(ctx context.Context, c *conn, t *tally) {
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for !r.stop.Load() {
		start := time.Now()
		if !r.end.IsZero() && !start.Before(r.end) {
			return
		}
		measured := !start.Before(r.begin)
		if measured && r.cfg.Requests > 0 && r.left.Add(-1) < 0 {
			return
		}
		c = r.once(ctx, c, int(r.next.Add(1)-1), start, measured, t)
	}
}

// once sends the j-th request on c, dialling first when c is nil, and
// returns the connection to use next (nil when it was closed).
func (r *run) once(ctx context.Context, c *conn, j int, start time.Time, measured bool,
	t *tally) *conn {
	var err error
	if c == nil {
		t.reconnects++
		if c, err = r.cfg.Target.dial(ctx, r.cfg.Timeout); err != nil {
			r.failed(t, start, measured)
			return nil
		}
	}
	status, keep, err := c.roundTrip(r.reqs.get(j), start.Add(r.cfg.Timeout))
	if err != nil {
		c.close()
		r.failed(t, start, measured)
		return nil
	}
	if measured {
		t.answer(status, time.Since(start))
	}
	if !keep {
		c.close()
		return nil
	}
	return c
}

// failed counts an error; a failed dial or request is not retried at once,
// so that a dead server does not turn the loop into a spin.
func (r *run) failed(t *tally, start time.Time, measured bool) {
	if measured {
		t.fail(time.Since(start))
	}
	time.Sleep(time.Millisecond)
}

// dialAll opens n connections to t, or none.
func dialAll(ctx context.Context, t Target, n int, timeout time.Duration) ([]*conn, error) {
	conns := make([]*conn, 0, n)
	for range n {
		c, err := t.dial(ctx, timeout)
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("connecting to %s: %w", t, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		c.close()
	}
}
