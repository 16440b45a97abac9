package agent

import (
	"context"
	"sync"
	"sync/atomic"
)

// call is one piece of work whose result many waiters share. done is
// closed once val and err are set; create one with newCall and end it
// with finish.
//
// Waiters that use wait are woken in the order they began to wait, each
// waking the next as it starts, not all at once by done: readied all at
// once, a thousand waiters run in an order of the scheduler's own (its
// run queue overflows into a global one that it visits late), so that
// the first consumer to ask could be answered last.
type call[T any] struct {
	done chan struct{}
	val  T
	err  error

	mu       sync.Mutex
	waiters  []*waiter
	finished bool
}

// A waiter is waiting until it is woken or leaves, whichever is first.
type waiter struct {
	ch    chan struct{}
	state atomic.Int32
}

const (
	waiting int32 = iota
	woken
	left
)

func newCall[T any]() *call[T] {
	return &call[T]{done: make(chan struct{})}
}

// finish publishes val and err and wakes the first waiter.
func (c *call[T]) finish(val T, err error) {
	c.val, c.err = val, err
	c.mu.Lock()
	c.finished = true
	c.mu.Unlock()
	close(c.done)
	c.wakeAfter(-1)
}

// wait waits until c is finished, in line with the other waiters, or ctx
// is done; it reports whether c finished.
func (c *call[T]) wait(ctx context.Context) bool {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return true
	}
	w := &waiter{ch: make(chan struct{})}
	i := len(c.waiters)
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
		if w.state.CompareAndSwap(waiting, left) {
			return false
		}
		<-w.ch // woken as it left: it must wake the next, and may as well answer
	}
	c.wakeAfter(i)
	return true
}

// wakeAfter wakes the first waiter after the i-th that has not left.
func (c *call[T]) wakeAfter(i int) {
	c.mu.Lock()
	next := c.waiters[i+1:] // complete: none are added once finished
	c.mu.Unlock()
	for _, w := range next {
		if w.state.CompareAndSwap(waiting, woken) {
			close(w.ch)
			return
		}
	}
}

// flight collapses concurrent work on one key into one call. Unlike
// golang.org/x/sync/singleflight it lets a caller see a call under way
// before starting one (joinable), so that joining is counted as a
// collapsed wait and starting is charged to the consumer's bucket, and
// it answers waiters in the order they came. Its zero value is ready; it
// is safe for concurrent use.
type flight[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

// joinable returns the call under way for key, or nil.
func (f *flight[T]) joinable(key string) *call[T] {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

// start returns the call under way for key, or starts fn in a new goroutine
// and returns its call. fn runs detached from every caller, so a caller
// that stops waiting cancels nothing for the others.
func (f *flight[T]) start(key string, fn func() (T, error)) *call[T] {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		return c
	}
	if f.calls == nil {
		f.calls = make(map[string]*call[T])
	}
	c := newCall[T]()
	f.calls[key] = c
	f.mu.Unlock()
	go func() {
		val, err := fn()
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		c.finish(val, err)
	}()
	return c
}
