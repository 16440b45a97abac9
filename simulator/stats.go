package simulator

import (
	"maps"
	"net/http"
	"sync"
)

// maxRequestKeys bounds Stats.Requests; requests for further distinct paths
// are counted under "METHOD " + otherPaths.
const (
	maxRequestKeys = 10000
	otherPaths     = "(other paths)"
)

// forwardingHeaders are the headers that mark a proxied request.
var forwardingHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip", "Via"}

// Stats counts the requests the simulator received, apart from those to
// /_simulator/. Counts are taken on arrival, so faulted and throttled
// requests are included.
type Stats struct {
	// Requests counts by "METHOD /path", the path as received without its
	// query, e.g. "GET /latest/meta-data/instance-id".
	Requests map[string]int `json:"requests"`
	// TokenPUTs counts PUT /latest/api/token requests, whatever the outcome.
	TokenPUTs int `json:"token_puts"`
	// TokensIssued counts tokens answered.
	TokensIssued int `json:"tokens_issued"`
	// Forwarded counts requests carrying X-Forwarded-For, Forwarded,
	// X-Real-IP or Via.
	Forwarded int `json:"forwarded"`
	// Tokenless counts GET and HEAD requests without
	// X-aliyun-ecs-metadata-token.
	Tokenless int `json:"tokenless"`
	// Throttled counts 429 answers.
	Throttled int `json:"throttled"`
	// Unauthorized counts 401 answers.
	Unauthorized int `json:"unauthorized"`
}

// counters accumulates Stats. It is safe for concurrent use.
type counters struct {
	mu sync.Mutex
	st Stats
}

func newCounters() *counters {
	return &counters{st: Stats{Requests: map[string]int{}}}
}

// arrived counts what can be told from the request alone.
func (c *counters) arrived(r *http.Request) {
	key := r.Method + " " + r.URL.EscapedPath()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.st.Requests[key]; !ok && len(c.st.Requests) >= maxRequestKeys {
		key = r.Method + " " + otherPaths
	}
	c.st.Requests[key]++
	if r.Method == http.MethodPut && r.URL.Path == tokenPath {
		c.st.TokenPUTs++
	}
	if forwarded(r.Header) {
		c.st.Forwarded++
	}
	if isRead(r.Method) && !hasHeader(r.Header, tokenHeader) {
		c.st.Tokenless++
	}
}

// answered counts the statuses Stats tracks.
func (c *counters) answered(status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch status {
	case http.StatusTooManyRequests:
		c.st.Throttled++
	case http.StatusUnauthorized:
		c.st.Unauthorized++
	}
}

func (c *counters) issued() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.TokensIssued++
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.st
	s.Requests = maps.Clone(c.st.Requests)
	return s
}

func (c *counters) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st = Stats{Requests: map[string]int{}}
}

func forwarded(h http.Header) bool {
	for _, name := range forwardingHeaders {
		if hasHeader(h, name) {
			return true
		}
	}
	return false
}

// hasHeader reports presence, even with an empty value. name must be in
// canonical form.
func hasHeader(h http.Header, name string) bool {
	_, ok := h[name]
	return ok
}

func isRead(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}
