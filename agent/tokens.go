package agent

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// maxConsumerTokens bounds the tokens held for consumers; past it the one
// that expires soonest is dropped, so a flood of PUTs costs memory once.
const maxConsumerTokens = 65536

// tokenStore holds the tokens the agent hands to its consumers. They are
// the agent's own: the upstream token never leaves the agent. It is safe
// for concurrent use.
type tokenStore struct {
	now func() time.Time
	max int

	mu     sync.Mutex
	expiry map[string]time.Time
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
	if len(s.expiry) >= s.max {
		s.pruneLocked(now)
	}
	s.expiry[tok] = now.Add(ttl)
	return tok
}

// valid reports whether tok was issued here and has not expired.
func (s *tokenStore) valid(tok string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.expiry[tok]
	if ok && !now.Before(exp) {
		delete(s.expiry, tok)
		ok = false
	}
	return ok
}

// pruneLocked drops every expired token and, if the store is still full,
// the one that expires soonest.
func (s *tokenStore) pruneLocked(now time.Time) {
	var soonest string
	var soonestAt time.Time
	for tok, exp := range s.expiry {
		switch {
		case !now.Before(exp):
			delete(s.expiry, tok)
		case soonest == "" || exp.Before(soonestAt):
			soonest, soonestAt = tok, exp
		}
	}
	if len(s.expiry) >= s.max {
		delete(s.expiry, soonest)
	}
}

// len returns how many tokens are held.
func (s *tokenStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.expiry)
}
