package agent

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/cache"
)

// httpError is an answer the agent makes itself: its status and a short
// text that names what was wrong, never a secret or a body.
type httpError struct {
	status int
	msg    string
	allow  string // the Allow header of a 405
}

func (e *httpError) Error() string { return e.msg }

var (
	errConnect   = &httpError{http.StatusMethodNotAllowed, "CONNECT is not served", "GET, HEAD"}
	errOtherHost = &httpError{http.StatusForbidden, "only http://" + MetadataHost + " is served", ""}
	errHostName  = &httpError{http.StatusForbidden,
		"Host must be an IP address or localhost (DNS rebinding guard)", ""}
	errMethod      = &httpError{http.StatusMethodNotAllowed, "method not allowed", "GET, HEAD"}
	errTokenMethod = &httpError{http.StatusMethodNotAllowed, "method not allowed", "PUT"}
	errBody        = &httpError{http.StatusBadRequest, "a read request carries no body", ""}
	errTokenBody   = &httpError{http.StatusBadRequest, "a token request carries no body", ""}
	errNoHost      = &httpError{http.StatusBadRequest, "an HTTP/1.0 request needs a Host header", ""}
	errPath        = &httpError{http.StatusBadRequest, "path is not canonical", ""}
	errQuery       = &httpError{http.StatusBadRequest, "query has characters not allowed", ""}
	errTooLong     = &httpError{http.StatusRequestURITooLong,
		"path and query longer than 1024 bytes", ""}
	errNotMetadata = &httpError{http.StatusNotFound, "not a metadata path", ""}
	errForwarded   = &httpError{http.StatusForbidden, "token requests through a proxy are refused", ""}
	errTTL         = &httpError{http.StatusBadRequest,
		"X-aliyun-ecs-metadata-token-ttl-seconds must be one whole number from 1 to 21600", ""}
	errBadToken = &httpError{http.StatusUnauthorized, "token unknown or expired", ""}
	errNoToken  = &httpError{http.StatusUnauthorized, "a token is required", ""}
	errGateway  = &httpError{http.StatusBadGateway, "metadata service unavailable", ""}
	errLoop     = &httpError{http.StatusLoopDetected,
		"request came from an agent: its upstream leads back to an agent", ""}
	errDenied       = &httpError{http.StatusForbidden, "denied by the access policy", ""}
	errConsumerRate = &httpError{http.StatusTooManyRequests,
		"too many uncached requests or token requests from this consumer", ""}
	errGaveUp = &httpError{http.StatusServiceUnavailable, "gave up waiting for upstream", ""}
)

const maxTokenTTL = 21600

// maxTarget bounds path plus query: metadata paths are short, and a long
// one would only cost cache memory.
const maxTarget = 1024

// ServeHTTP answers one consumer request. It routes by hand, not with
// http.ServeMux, which would answer some metadata paths with redirects.
// Most requests never come here: the agent's own listeners answer plain
// ones on the lean path (conn.go), which makes the same checks in the
// same order.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		refuseBody(w)
	}
	q := readRequestOf(r)
	if err := checkTarget(r, &q); err != nil {
		a.fail(w, err)
		return
	}
	if r.URL.Path == tokenPath {
		a.serveToken(w, r)
		return
	}
	if err := a.checkRead(&q); err != nil {
		a.fail(w, err)
		return
	}
	key := q.path
	if q.query != "" {
		key += "?" + q.query
	}
	// Not r.Context(): the fill a consumer waits on ends within
	// --upstream-timeout anyway, and a client that half-closes its side
	// (which cancels that context) must still get its answer, not none.
	resp, err := a.lookup(context.Background(), key, q.who)
	if err != nil {
		a.fail(w, err)
		return
	}
	a.write(w, r, resp)
}

// readRequest is what the checks read of a consumer's request, whether
// net/http parsed it or the lean path did. On the lean path its strings
// alias the connection's buffer: nothing may keep them past the request.
type readRequest struct {
	method  string
	host    string // the Host header; "" also when the target named a host
	path    string // decoded
	rawPath string // as url.URL has it: "" when path needs no escaping
	query   string
	token   string // the first consumer token header
	tokens  int    // how many consumer token headers there were
	loop    bool   // the agents' hop header is present
	body    bool   // the request announced a body
	who     *Consumer
}

func readRequestOf(r *http.Request) readRequest {
	q := readRequest{method: r.Method, host: r.Host, path: r.URL.Path,
		rawPath: r.URL.RawPath, query: r.URL.RawQuery, who: consumerFrom(r),
		body: r.ContentLength != 0 || len(r.TransferEncoding) > 0}
	_, q.loop = r.Header[loopHeader]
	if v := r.Header[tokenHeader]; len(v) > 0 {
		q.token, q.tokens = v[0], len(v)
	}
	return q
}

// refuseBody readies the answer to a request that has a body, which the
// agent never reads: the connection closes after the answer, so that
// nothing after the body is parsed as a request, and the read net/http
// would make to drain the body ends at once (a past deadline) rather
// than wait for a client that may never send it.
func refuseBody(w http.ResponseWriter) {
	w.Header()["Connection"] = []string{"close"}
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

// checkTarget refuses CONNECT, HTTP/1.0 requests that name no host, and
// absolute-form requests for any host but the metadata service's: the
// agent is never an open proxy.
func checkTarget(r *http.Request, q *readRequest) error {
	if r.Method == http.MethodConnect {
		return errConnect
	}
	if q.loop {
		return errLoop
	}
	if r.Host == "" && !r.ProtoAtLeast(1, 1) {
		return errNoHost // HTTP/1.1 requires one; net/http enforces that
	}
	if r.URL.Host == "" && r.URL.Scheme == "" {
		return checkHost(q.host, q.who)
	}
	host := strings.TrimSuffix(r.URL.Host, ":80")
	if r.URL.Scheme != "http" || host != MetadataHost {
		return errOtherHost
	}
	return nil
}

// checkHost refuses a TCP request whose Host is a DNS name other than
// localhost: a web page that rebinds its own name to the agent's address
// would send its name, while every real consumer names an address (the
// metadata service's, a loopback or link-local one). Unix-socket clients
// cannot be reached from a browser and may send any Host.
func checkHost(host string, who *Consumer) error {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || host == "localhost" {
		return nil
	}
	// Only a connection known to be TCP is held to this; without the
	// server's ConnContext the transport is unknown.
	if who == nil || !who.tcp {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	return errHostName
}

// checkRead validates a metadata read; its cache key is the path, plus
// the query when there is one ("?" alone is none).
func (a *Agent) checkRead(q *readRequest) error {
	if q.method != http.MethodGet && q.method != http.MethodHead {
		return errMethod
	}
	if q.body {
		return errBody
	}
	if err := checkPath(q.path, q.rawPath); err != nil {
		return err
	}
	if !allOf(q.query, queryChars) {
		return errQuery
	}
	if len(q.path)+len(q.query) > maxTarget {
		return errTooLong
	}
	if err := a.checkToken(q.token, q.tokens); err != nil {
		return err
	}
	return a.checkPolicy(q.who, q.path)
}

// checkPath accepts only paths that name one entry in one spelling: no dot
// segments, no empty segments, no backslashes and no encoded slashes, so
// that no path is served from or stored under another's entry. The decoded
// path is also sent upstream, so it may hold no '?', '#' or '%', nor ';':
// servers that strip path parameters would read "/..;/" as "/../".
func checkPath(path, rawPath string) error {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "//") ||
		strings.Contains(path, "/./") || strings.Contains(path, "/../") ||
		strings.HasSuffix(path, "/.") || strings.HasSuffix(path, "/..") ||
		!allOf(path, pathChars) {
		return errPath
	}
	if rawPath != "" && containsFold(rawPath, "%2f", "%5c", "%00") {
		return errPath
	}
	if !isMetadataRoot(path) {
		return errNotMetadata
	}
	return nil
}

// isMetadataRoot accepts "/", "/latest..." and versioned roots such as
// "/2016-01-01...".
func isMetadataRoot(path string) bool {
	first, _, _ := strings.Cut(path[1:], "/")
	if first == "" || first == "latest" {
		return true
	}
	_, err := time.Parse(time.DateOnly, first)
	return err == nil
}

// plainASCII reports whether s holds only printable ASCII, no space, and
// none of the bytes in deny.
func plainASCII(s, deny string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(deny, c) >= 0 {
			return false
		}
	}
	return true
}

// Sets of plainASCII bytes for the checks made on every request, which
// test each byte once rather than against every denied one.
var (
	pathChars  = plainSet(`\?#%;`)
	queryChars = plainSet("#")
)

func plainSet(deny string) *byteSet {
	var s byteSet
	for c := byte('!'); c < 0x7f; c++ {
		s[c] = strings.IndexByte(deny, c) < 0
	}
	return &s
}

func containsFold(s string, subs ...string) bool {
	lower := strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(lower, sub) {
			return true
		}
	}
	return false
}

// checkToken checks a consumer's token, which must be one the agent issued;
// n is how many token headers the request had, first the first one's value.
func (a *Agent) checkToken(first string, n int) error {
	switch {
	case n == 0 && a.cfg.RequireToken:
		return errNoToken
	case n == 0:
		return nil
	case n != 1 || !a.tokens.valid(first):
		return errBadToken
	}
	return nil
}

// checkPolicy applies the access policy to the cleaned path; denials are
// logged with the consumer's identity and the path, never a query.
func (a *Agent) checkPolicy(who *Consumer, path string) error {
	if a.cfg.policy == nil {
		return nil
	}
	ok, line := a.cfg.policy.Allow(who, path)
	if ok {
		return nil
	}
	a.m.denials.Inc()
	a.log.Warn("denied by policy", zap.Stringer("consumer", who),
		zap.String("path", path), zap.Int("rule_line", line))
	return errDenied
}

// serveToken answers a consumer's token PUT locally; it never causes an
// upstream request.
func (a *Agent) serveToken(w http.ResponseWriter, r *http.Request) {
	ttl, err := checkTokenRequest(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	if who := consumerFrom(r); !a.consumers.allow(who) {
		a.log.Warn("consumer throttled", zap.Stringer("consumer", who))
		a.fail(w, errConsumerRate)
		return
	}
	tok := a.tokens.issue(ttl)
	a.m.consumerTokens.Inc()
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(tok))}
	a.m.respond(http.StatusOK)
	_, _ = w.Write([]byte(tok))
}

func checkTokenRequest(r *http.Request) (time.Duration, error) {
	if r.Method != http.MethodPut {
		return 0, errTokenMethod
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return 0, errTokenBody
	}
	if _, ok := r.Header["X-Forwarded-For"]; ok {
		return 0, errForwarded
	}
	return parseTTL(r.Header[tokenTTLHeader])
}

// parseTTL accepts exactly one header value of decimal digits (at most 9,
// so it cannot overflow) between 1 and 21600.
func parseTTL(values []string) (time.Duration, error) {
	if len(values) != 1 || len(values[0]) == 0 || len(values[0]) > 9 {
		return 0, errTTL
	}
	n := 0
	for _, c := range []byte(values[0]) {
		if c < '0' || c > '9' {
			return 0, errTTL
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > maxTokenTTL {
		return 0, errTTL
	}
	return time.Duration(n) * time.Second, nil
}

// lookup answers key from cache, or from one upstream call shared by every
// consumer that misses the same key meanwhile. A stale entry that allows
// it is served at once while a refresh runs; any other stale entry is
// served only when upstream fails.
// who is the consumer, or nil for the agent's own lookups. key may alias
// a connection's buffer: it is copied before anything keeps it.
func (a *Agent) lookup(ctx context.Context, key string, who *Consumer) (*response, error) {
	resp, state := a.cache.Get(key)
	if state == cache.Fresh {
		a.m.hits.Inc()
		return resp, nil
	}
	key = strings.Clone(key)
	switch {
	case state == cache.Stale && resp.revalidate && a.servableWhileRefreshing(resp):
		a.m.stale.Inc()
		a.refresh(key)
		return resp, nil
	case state == cache.Stale && a.upstreamDown():
		a.m.stale.Inc()
		a.log.Warn("serving stale", zap.String("path", pathOnly(key)))
		a.refresh(key)
		return resp, nil
	}
	a.m.misses.Inc()
	c := a.flight.joinable(key)
	if c != nil {
		a.m.collapsed.Inc()
	} else if who != nil && !a.consumers.allow(who) {
		a.log.Warn("consumer throttled", zap.Stringer("consumer", who))
		return nil, errConsumerRate
	} else {
		c = a.refresh(key)
	}
	if !c.wait(ctx) {
		return nil, errGaveUp
	}
	// The fill may have taken until past the stale limit (or Expiration):
	// only an entry that is still stale now is served in its place.
	if !failed(c.val, c.err) {
		return c.val, c.err
	}
	if stale, st := a.cache.Peek(key); st == cache.Stale {
		a.m.stale.Inc()
		a.log.Warn("serving stale", zap.String("path", pathOnly(key)))
		return stale, nil
	}
	return c.val, c.err
}

// minServedValidity is the validity a revalidated entry (credentials) must
// still have to be served without waiting for its refresh: clients that
// treat a set as stale 15 minutes before it expires must not get one
// already inside that window, as after a clock jump or a resume.
const minServedValidity = 15 * time.Minute

func (a *Agent) servableWhileRefreshing(r *response) bool {
	return a.now().Add(minServedValidity).Before(r.expires)
}

// refresh starts filling key from upstream, or joins the fill under way.
func (a *Agent) refresh(key string) *call[*response] {
	return a.flight.start(key, func() (*response, error) { return a.fill(key) })
}

func failed(r *response, err error) bool {
	return err != nil || retryable(r.status)
}

// downFor is how long after a failed fill stale entries are served at
// once, rather than after another attempt that would likely fail too.
const downFor = 5 * time.Second

// upstreamDown reports whether a fill failed within the last downFor.
func (a *Agent) upstreamDown() bool {
	return a.now().UnixNano() < a.downUntil.Load()
}

// noteUpstream records the outcome of a fill for upstreamDown.
func (a *Agent) noteUpstream(r *response, err error) {
	if failed(r, err) {
		a.downUntil.Store(a.now().Add(downFor).UnixNano())
		return
	}
	if a.downUntil.Load() != 0 {
		a.downUntil.Store(0)
	}
}

// fill asks upstream for key under the agent's own deadline and caches
// the answer for as long as its kind allows.
func (a *Agent) fill(key string) (*response, error) {
	// A miss that raced a fill just finished would ask upstream again.
	if resp, st := a.cache.Peek(key); st == cache.Fresh {
		return resp, nil
	}
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.UpstreamTimeout)
	defer cancel()
	resp, err := a.up.get(ctx, key)
	a.noteUpstream(resp, err)
	if err != nil {
		a.log.Warn("upstream degraded", zap.String("path", pathOnly(key)), zap.Error(err))
		return nil, errGateway
	}
	now := a.now()
	if ce := a.log.Check(zap.DebugLevel, "upstream answered"); ce != nil {
		ce.Write(zap.String("path", pathOnly(key)), zap.Int("status", resp.status),
			zap.Int("bytes", len(resp.body)))
	}
	if expiredCredentials(key, resp, now) {
		a.log.Warn("upstream credentials already expired", zap.String("path", pathOnly(key)))
		return nil, errGateway
	}
	p := a.ttl.lifetime(key, resp, now)
	if !p.store {
		return resp, nil
	}
	resp.revalidate, resp.expires = p.revalidate, p.stale
	if p.revalidate && !strings.Contains(key, "?") {
		a.revalidated.Store(key, struct{}{})
	}
	if err := a.cache.Set(key, resp, p.fresh, p.stale); err != nil {
		a.log.Warn("answer not cached", zap.String("path", pathOnly(key)), zap.Error(err))
	}
	return resp, nil
}

// expiredCredentials reports whether resp is a credentials document whose
// Expiration has passed: the agent serves none, not even upstream's.
func expiredCredentials(key string, resp *response, now time.Time) bool {
	item, ok := metaDataItem(key)
	if !ok || !isCredentials(item) || resp.status != http.StatusOK {
		return false
	}
	exp, ok := credentialsExpiration(resp.body)
	return ok && !now.Before(exp)
}

// pathOnly drops the query, which logs must not carry.
func pathOnly(key string) string {
	p, _, _ := strings.Cut(key, "?")
	return p
}

// write sends resp: status, Content-Type as upstream gave it (none is
// invented), and the body byte for byte.
func (a *Agent) write(w http.ResponseWriter, r *http.Request, resp *response) {
	h := w.Header()
	h["Content-Type"] = resp.head.contentType
	h["Content-Length"] = resp.head.contentLength
	if resp.head.location != nil {
		h["Location"] = resp.head.location
	}
	a.m.respond(resp.status)
	w.WriteHeader(resp.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.body)
	}
}

// fail turns err into the consumer's answer; this is the one place where
// errors become HTTP responses.
func (a *Agent) fail(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = errGateway
	}
	h := w.Header()
	if he.allow != "" {
		h["Allow"] = []string{he.allow}
	}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	a.m.respond(he.status)
	w.WriteHeader(he.status)
	_, _ = w.Write([]byte(he.msg + "\n"))
}
