package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestCallWakesInLine checks the chain: finish wakes only the first
// waiter, each woken waiter wakes the next, and one that left is skipped.
func TestCallWakesInLine(t *testing.T) {
	c := newCall[int]()
	ws := make([]*waiter, 3)
	for i := range ws {
		ws[i] = &waiter{ch: make(chan struct{})}
	}
	c.waiters = ws
	c.finish(7, nil)
	if !isClosed(c.done) || !isClosed(ws[0].ch) || isClosed(ws[1].ch) || isClosed(ws[2].ch) {
		t.Fatalf("after finish: done %v, waiters %v %v %v; want only the first woken",
			isClosed(c.done), isClosed(ws[0].ch), isClosed(ws[1].ch), isClosed(ws[2].ch))
	}
	ws[1].state.Store(left)
	c.wakeAfter(0)
	if isClosed(ws[1].ch) || !isClosed(ws[2].ch) {
		t.Errorf("after the first woke the next: left one woken %v, third woken %v",
			isClosed(ws[1].ch), isClosed(ws[2].ch))
	}
	if !c.wait(context.Background()) || c.val != 7 {
		t.Errorf("wait after finish: want true at once and the value, got %d", c.val)
	}
}

// TestCallWaitersThatLeave has many waiters, a third of which give up
// before the call finishes: every other one must still be answered.
func TestCallWaitersThatLeave(t *testing.T) {
	c := newCall[int]()
	var wg sync.WaitGroup
	results := make([]bool, 300)
	ctxs := make([]context.CancelFunc, len(results))
	for i := range results {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.wait(ctx)
		}()
	}
	for i := 0; i < len(ctxs); i += 3 {
		ctxs[i]() // some leave before the end, some race with it
	}
	c.finish(1, errors.New("x"))
	wg.Wait()
	for i, ok := range results {
		if !ok && i%3 != 0 {
			t.Errorf("waiter %d was not answered", i)
		}
		ctxs[i]()
	}
}
