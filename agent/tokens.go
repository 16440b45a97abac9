package agent

import (
	"container/heap"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// maxConsumerTokens bounds the tokens held for consumers; past it the one
// that expires soonest is dropped, so a flood of PUTs costs memory once.
const maxConsumerTokens = 65536

// tokenStore holds the tokens the agent hands to its consumers. They are
// the agent's own: the upstream token never leaves the agent. Expired
// tokens leave in expiry order through a heap, so a PUT costs O(log n)
// even when the store is full. It is safe for concurrent use.
type tokenStore struct {
	now func() time.Time
	max int

	mu     sync.RWMutex
	expiry map[string]time.Time
	order  expiryHeap
}

type issued struct {
	token string
	at    time.Time // expiry
}

// expiryHeap is a min-heap of tokens by expiry, for container/heap.
type expiryHeap []issued

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(issued)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newTokenStore(now func() time.Time, max int) *tokenStore {
	return &tokenStore{now: now, max: max, expiry: make(map[string]time.Time)}
}

// issue returns a new token valid for ttl.
func (s *tokenStore) issue(ttl time.Duration) string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	s.expiry[tok] = now.Add(ttl)
	heap.Push(&s.order, issued{tok, now.Add(ttl)})
	return tok
}

// valid reports whether tok was issued here and has not expired.
func (s *tokenStore) valid(tok string) bool {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	exp, ok := s.expiry[tok]
	return ok && now.Before(exp)
}

// pruneLocked drops the expired tokens and, while the store is full, the
// ones that expire soonest.
func (s *tokenStore) pruneLocked(now time.Time) {
	for len(s.order) > 0 && (len(s.order) >= s.max || !now.Before(s.order[0].at)) {
		delete(s.expiry, heap.Pop(&s.order).(issued).token)
	}
}

// len returns how many tokens are held.
func (s *tokenStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.expiry)
}
