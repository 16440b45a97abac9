package agent

import "sync"

// call is one piece of work whose result many waiters share. done is
// closed once val and err are set.
type call[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// flight collapses concurrent work on one key into one call. Unlike
// golang.org/x/sync/singleflight it lets a caller see a call under way
// before starting one (joinable), so that joining is counted as a
// collapsed wait and starting is charged to the consumer's bucket. Its
// zero value is ready; it is safe for concurrent use.
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
	c := &call[T]{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	go func() {
		c.val, c.err = fn()
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	return c
}
