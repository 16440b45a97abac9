package simulator

import (
	"container/heap"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Token limits of the real service.
const (
	minTokenTTL = 1
	maxTokenTTL = 21600
	// maxTokens bounds the token store; when it is full the token closest
	// to expiry is forgotten first.
	maxTokens = 1 << 16
)

var errBadTTL = errors.New("bad token ttl")

// parseTTL accepts exactly one header value that is a plain decimal
// integer of seconds in the range the real service accepts.
func parseTTL(vals []string) (time.Duration, error) {
	if len(vals) != 1 {
		return 0, errBadTTL
	}
	v := vals[0]
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0, errBadTTL
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minTokenTTL || n > maxTokenTTL {
		return 0, errBadTTL
	}
	return time.Duration(n) * time.Second, nil
}

// tokenStore remembers issued tokens until they expire. It is safe for
// concurrent use.
type tokenStore struct {
	mu     sync.Mutex
	max    int
	expiry map[string]time.Time
	queue  expiryQueue
}

func newTokenStore(max int) *tokenStore {
	return &tokenStore{max: max, expiry: map[string]time.Time{}}
}

// issue returns a new token valid for ttl from now.
func (ts *tokenStore) issue(now time.Time, ttl time.Duration) string {
	tok := newToken()
	exp := now.Add(ttl)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pruneLocked(now)
	heap.Push(&ts.queue, tokenEntry{token: tok, expiry: exp})
	ts.expiry[tok] = exp
	return tok
}

// pruneLocked drops expired tokens, then the soonest-expiring ones until
// there is room for one more.
func (ts *tokenStore) pruneLocked(now time.Time) {
	for len(ts.queue) > 0 && !now.Before(ts.queue[0].expiry) {
		delete(ts.expiry, heap.Pop(&ts.queue).(tokenEntry).token)
	}
	for len(ts.expiry) >= ts.max && len(ts.queue) > 0 {
		delete(ts.expiry, heap.Pop(&ts.queue).(tokenEntry).token)
	}
}

// valid reports whether tok was issued and has not expired at now.
func (ts *tokenStore) valid(tok string, now time.Time) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	exp, ok := ts.expiry[tok]
	return ok && now.Before(exp)
}

// revoke forgets every token.
func (ts *tokenStore) revoke() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.expiry)
	ts.queue = nil
}

func (ts *tokenStore) len() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.expiry)
}

// newToken returns 256 random bits, URL-safe, 43 characters.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails: crypto/rand crashes instead
	return base64.RawURLEncoding.EncodeToString(b)
}

type tokenEntry struct {
	token  string
	expiry time.Time
}

// expiryQueue is a min-heap of tokens by expiry.
type expiryQueue []tokenEntry

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].expiry.Before(q[j].expiry) }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }

func (q *expiryQueue) Push(x any) { *q = append(*q, x.(tokenEntry)) }

func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
