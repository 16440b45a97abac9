// Package cache is a bounded LRU of values that expire. Each entry has a
// time until which it is fresh and a later time until which it may still be
// served stale; the cache is bounded both by entry count and by the bytes its
// values report. It knows nothing of HTTP or metrics: callers read a Stats
// snapshot. A Cache is safe for concurrent use; create one with New.
package cache

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// State says what a lookup found.
type State int

const (
	// Miss means no entry, or one past its stale limit.
	Miss State = iota
	// Fresh means an entry within its fresh lifetime.
	Fresh
	// Stale means an entry past its fresh lifetime but within its stale
	// limit: servable only when the source of truth cannot be reached.
	Stale
)

// String names the state for logs and tests.
func (s State) String() string {
	switch s {
	case Fresh:
		return "fresh"
	case Stale:
		return "stale"
	default:
		return "miss"
	}
}

// Options configure a Cache.
type Options[V any] struct {
	// MaxEntries bounds the number of entries; it must be positive.
	MaxEntries int
	// MaxBytes bounds the sum of Size over all entries; 0 means no bound.
	MaxBytes int64
	// Size reports an entry's weight in bytes, its key included; nil
	// counts only the key.
	Size func(key string, v V) int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Stats is a snapshot of a Cache's counters and occupancy.
type Stats struct {
	Hits, StaleHits, Misses uint64
	Evictions               uint64
	Entries                 int
	Bytes                   int64
}

// ErrTooLarge is returned by Set for a value larger than MaxBytes.
var ErrTooLarge = errors.New("cache: value larger than the byte bound")

// entry is held in the LRU's own element, not behind a pointer of its
// own: one allocation an entry fewer. Its deadlines stay times, compared
// as time.Time compares them: by the monotonic clock when both carry a
// reading (deadlines from time.Now plus a lifetime), by the wall clock
// when one does not (a credentials document's Expiration), so that a
// step of the system clock moves the latter and not the former.
type entry[V any] struct {
	value      V
	size       int64
	freshUntil time.Time
	staleUntil time.Time
}

// Cache is an LRU of values with a fresh and a stale deadline each.
type Cache[V any] struct {
	opts  Options[V]
	mu    sync.Mutex
	lru   *simplelru.LRU[string, entry[V]]
	bytes int64
	stats Stats
}

// New returns an empty Cache, or an error naming the bad option.
func New[V any](opts Options[V]) (*Cache[V], error) {
	if opts.MaxEntries <= 0 {
		return nil, fmt.Errorf("cache: MaxEntries %d: must be positive", opts.MaxEntries)
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("cache: MaxBytes %d: must be 0 or positive", opts.MaxBytes)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Cache[V]{opts: opts}
	l, err := simplelru.NewLRU(opts.MaxEntries, c.onEvictLocked)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.lru = l
	return c, nil
}

// onEvictLocked keeps the byte count in step with the LRU; the LRU calls it
// with c.mu held, for evictions and removals alike.
func (c *Cache[V]) onEvictLocked(_ string, e entry[V]) {
	c.bytes -= e.size
}

// Get looks key up. It returns the value and Fresh or Stale, or Miss with
// the zero value. A lookup that finds an entry marks it recently used.
func (c *Cache[V]) Get(key string) (V, State) {
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lru.Get(key)
	switch {
	case !ok:
		c.stats.Misses++
	case now.Before(e.freshUntil):
		c.stats.Hits++
		return e.value, Fresh
	case now.Before(e.staleUntil):
		c.stats.StaleHits++
		return e.value, Stale
	default:
		c.lru.Remove(key)
		c.stats.Misses++
	}
	var zero V
	return zero, Miss
}

// Peek is Get without side effects: it neither counts the lookup nor
// marks the entry used, for background work that must not skew either.
func (c *Cache[V]) Peek(key string) (V, State) {
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	e, ok := c.lru.Peek(key)
	switch {
	case !ok:
		return zero, Miss
	case now.Before(e.freshUntil):
		return e.value, Fresh
	case now.Before(e.staleUntil):
		return e.value, Stale
	}
	return zero, Miss
}

// Set stores v under key, fresh until freshUntil and servable stale until
// staleUntil (a staleUntil before freshUntil counts as freshUntil). A value
// whose fresh time has already passed is not stored. Entries are evicted,
// least recently used first, until both bounds hold.
func (c *Cache[V]) Set(key string, v V, freshUntil, staleUntil time.Time) error {
	if staleUntil.Before(freshUntil) {
		staleUntil = freshUntil
	}
	e := entry[V]{value: v, freshUntil: freshUntil, staleUntil: staleUntil}
	e.size = int64(len(key))
	if c.opts.Size != nil {
		e.size = c.opts.Size(key, v)
	}
	if c.opts.MaxBytes > 0 && e.size > c.opts.MaxBytes {
		c.Remove(key)
		return fmt.Errorf("%w: %d bytes, bound %d", ErrTooLarge, e.size, c.opts.MaxBytes)
	}
	if !c.opts.Now().Before(freshUntil) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(key)
	if c.lru.Add(key, e) {
		c.stats.Evictions++
	}
	c.bytes += e.size
	c.shrinkLocked()
	return nil
}

func (c *Cache[V]) shrinkLocked() {
	for c.opts.MaxBytes > 0 && c.bytes > c.opts.MaxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			return
		}
		c.stats.Evictions++
	}
}

// Remove deletes key, if present.
func (c *Cache[V]) Remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(key)
}

// Purge deletes every entry.
func (c *Cache[V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Purge()
}

// Stats returns a snapshot of the counters and the current occupancy.
func (c *Cache[V]) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Entries = c.lru.Len()
	s.Bytes = c.bytes
	return s
}
