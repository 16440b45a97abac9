package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

const (
	tokenPath       = "/latest/api/token"
	tokenHeader     = "X-Aliyun-Ecs-Metadata-Token"
	tokenTTLHeader  = "X-Aliyun-Ecs-Metadata-Token-Ttl-Seconds"
	maxUpstreamBody = 4 << 20
	userAgent       = "ecs-metadata-agent"
	// loopHeader marks the agent's own upstream requests; an agent that
	// receives one as a consumer request is talking to itself (interception
	// that fails to exempt it) and says so rather than loop.
	loopHeader = "X-Ecs-Metadata-Agent-Hop"
)

// errUpstream is wrapped by every failure to get an answer from upstream.
var errUpstream = errors.New("upstream unavailable")

// upstream reads the metadata service with one hardened-mode token. It
// builds every request from scratch, so nothing a consumer sent reaches the
// service. It is safe for concurrent use.
type upstream struct {
	base     string
	client   *http.Client
	tokenTTL time.Duration
	timeout  time.Duration
	now      func() time.Time
	log      *zap.Logger
	m        *metrics
	limit    *rate.Limiter   // the agent's own request rate upstream
	life     context.Context // the agent's lifetime; token fetches end with it

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	expiresAt time.Time
	fetching  *call[string] // the token PUT under way, if any
	retryAt   time.Time     // after a failed PUT, none before this
	backoff   time.Duration // the wait after the last failed PUT
}

func newUpstream(life context.Context, cfg Config, now func() time.Time, log *zap.Logger,
	m *metrics) *upstream {
	// TODO(upstream): net/http retries a GET whose reused connection drops
	// before any answer, so one drop can cost several upstream requests
	// that neither the rate limiter nor the metrics see. Issue 5's note.
	//
	// An idle connection is kept for minutes, probed meanwhile (see
	// upstreamDialer): a herd after a quiet spell would otherwise open a
	// new one while its requests hold the core, and the connect's
	// readiness waits behind them (5 ms measured).
	tr := &http.Transport{
		Proxy:                 nil, // never through HTTP_PROXY: consumers may point it at us
		DialContext:           upstreamDialer(cfg.UpstreamTimeout).DialContext,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       5 * time.Minute,
		ResponseHeaderTimeout: cfg.UpstreamTimeout,
		DisableCompression:    true, // bodies pass through byte-exact
	}
	return &upstream{
		base:     cfg.Upstream,
		client:   &http.Client{Transport: tr, CheckRedirect: noRedirects},
		tokenTTL: cfg.TokenTTL,
		timeout:  cfg.UpstreamTimeout,
		now:      now,
		log:      log,
		m:        m,
		limit:    rate.NewLimiter(rate.Limit(cfg.UpstreamRate), cfg.UpstreamBurst),
		life:     life,
	}
}

// upstreamDialer dials upstream connections with TCP keep-alive probes
// that find a dead path within 30 s of the last traffic (15 s idle, then 3
// probes 5 s apart), so that a connection kept idle for minutes has not
// silently died when a request needs it.
func upstreamDialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}}
}

// connWatch notes what became of one upstream request's connection.
type connWatch struct {
	reused, answered atomic.Bool
}

// watch returns ctx with a trace that fills w.
func (w *connWatch) watch(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:              func(i httptrace.GotConnInfo) { w.reused.Store(i.Reused) },
		GotFirstResponseByte: func() { w.answered.Store(true) },
	})
}

// connFailed drops the idle upstream connections after a request on a
// kept connection got not a byte back (a timeout, a reset): net/http
// closes that one, but others idle as long may be as dead, and each would
// fail a request of its own; the next request dials instead. A failure on
// a new connection, or after an answer began, says nothing of the idle
// ones, and leaves them be.
func (u *upstream) connFailed(err error, w *connWatch) {
	if w.reused.Load() && !w.answered.Load() && !errors.Is(err, context.Canceled) {
		u.client.CloseIdleConnections()
	}
}

// Retries of 429 and 5xx answers: at most maxRetries, the first after
// about firstBackoff, doubling, each with up to as much again of jitter,
// and none that would end past the caller's deadline.
const (
	maxRetries   = 3
	firstBackoff = 50 * time.Millisecond
)

// get fetches pathQuery, retrying throttled and failed answers with
// exponential backoff within ctx's deadline. It returns the last answer.
func (u *upstream) get(ctx context.Context, pathQuery string) (*response, error) {
	backoff := firstBackoff
	for attempt := 0; ; attempt++ {
		resp, err := u.getOnce(ctx, pathQuery)
		if err != nil || !retryable(resp.status) || attempt == maxRetries {
			return resp, err
		}
		wait := backoff + randDuration(backoff)
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			return resp, nil
		}
		u.log.Warn("upstream throttled or failing, retrying", zap.String("path", pathOnly(pathQuery)),
			zap.Int("status", resp.status), zap.Duration("backoff", wait))
		if !sleepCtx(ctx, wait) {
			return resp, nil
		}
		backoff *= 2
	}
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// getOnce fetches pathQuery with the current token, replacing the token
// and retrying once when upstream answers 401.
func (u *upstream) getOnce(ctx context.Context, pathQuery string) (*response, error) {
	tok, err := u.currentToken(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := u.do(ctx, pathQuery, tok)
	if err != nil || resp.status != http.StatusUnauthorized {
		return resp, err
	}
	u.log.Warn("upstream token refused, fetching a new one")
	u.dropToken(tok)
	if tok, err = u.currentToken(ctx); err != nil {
		return nil, err
	}
	return u.do(ctx, pathQuery, tok)
}

func (u *upstream) do(ctx context.Context, pathQuery, tok string) (*response, error) {
	var w connWatch
	req, err := http.NewRequestWithContext(w.watch(ctx), http.MethodGet, u.base+pathQuery, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: building request: %v", errUpstream, err)
	}
	req.Header = http.Header{tokenHeader: {tok}, "User-Agent": {userAgent}, loopHeader: {"1"}}
	if err := u.limit.Wait(ctx); err != nil {
		u.m.upstream(outcomeLimited)
		return nil, fmt.Errorf("%w: not sent, over the agent's own --upstream-rate", errUpstream)
	}
	sent := time.Now() // a duration, on the monotonic clock: not the TTL clock
	res, err := u.client.Do(req)
	if err != nil {
		u.m.upstreamTime.Observe(time.Since(sent).Seconds())
		u.m.upstream(outcomeOf(0, err))
		u.connFailed(err, &w)
		return nil, fmt.Errorf("%w: %s", errUpstream, describe(err))
	}
	defer res.Body.Close()
	body, err := readBody(res)
	u.m.upstreamTime.Observe(time.Since(sent).Seconds())
	if err != nil || len(body) > maxUpstreamBody {
		u.m.upstream(outcomeError)
		return nil, fmt.Errorf("%w: reading body: %s", errUpstream, describe(err))
	}
	u.m.upstream(outcomeOf(res.StatusCode, nil))
	r := newResponse(res.StatusCode, res.Header["Content-Type"], body)
	if res.StatusCode/100 == 3 {
		r.withLocation(res.Header["Location"])
	}
	return r, nil
}

// readBody reads at most maxUpstreamBody+1 bytes into a slice of exactly
// the body's size: cached bodies carry no spare capacity.
func readBody(res *http.Response) ([]byte, error) {
	if n := res.ContentLength; n >= 0 && n <= maxUpstreamBody {
		body := make([]byte, n)
		_, err := io.ReadFull(res.Body, body)
		return body, err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxUpstreamBody+1))
	return bytes.Clone(body), err
}

// describe says what went wrong without quoting URLs, which a *url.Error
// would, so that no query string reaches a log line or a consumer.
func describe(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "body larger than 4 MiB"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap().Error()
	}
	return err.Error()
}

// currentToken returns a token that is valid now, fetching one when none
// is held and starting a refresh in the background when the held one is
// due for it. Concurrent callers share one PUT.
func (u *upstream) currentToken(ctx context.Context) (string, error) {
	// A second round covers joining a fetch that began so long ago (on a
	// clock that jumped) that its token has lapsed by the time it lands.
	for round := 0; ; round++ {
		now := u.now()
		u.mu.Lock()
		tok, valid, due := u.token, now.Before(u.expiresAt), !now.Before(u.refreshAt)
		backingOff := now.Before(u.retryAt) && u.fetching == nil
		var c *call[string]
		if (!valid || due) && !backingOff {
			c = u.startFetchLocked()
		}
		u.mu.Unlock()
		if valid {
			return tok, nil
		}
		if c == nil {
			return "", fmt.Errorf("%w: no token; the last token request failed", errUpstream)
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return "", fmt.Errorf("%w: waiting for a token: %s", errUpstream, describe(ctx.Err()))
		}
		if c.err != nil || round == 1 || u.hasToken() {
			return c.val, c.err
		}
	}
}

func (u *upstream) startFetchLocked() *call[string] {
	if u.fetching != nil {
		return u.fetching
	}
	c := newCall[string]()
	u.fetching = c
	go func() {
		ctx, cancel := context.WithTimeout(u.life, u.timeout)
		defer cancel()
		tok, err := u.fetchToken(ctx)
		u.noteTokenResult(err)
		u.mu.Lock()
		u.fetching = nil
		u.mu.Unlock()
		c.finish(tok, err)
	}()
	return c
}

// fetchToken PUTs for a new token and stores it.
func (u *upstream) fetchToken(ctx context.Context) (string, error) {
	issued := u.now()
	var w connWatch
	req, err := http.NewRequestWithContext(w.watch(ctx), http.MethodPut, u.base+tokenPath, nil)
	if err != nil {
		return "", fmt.Errorf("%w: building token request: %v", errUpstream, err)
	}
	ttl := strconv.Itoa(int(u.tokenTTL / time.Second))
	req.Header = http.Header{tokenTTLHeader: {ttl}, "User-Agent": {userAgent},
		loopHeader: {"1"}}
	if err := u.limit.Wait(ctx); err != nil {
		u.m.tokenRefresh(false)
		return "", fmt.Errorf("%w: token request not sent, over the agent's own --upstream-rate",
			errUpstream)
	}
	res, err := u.client.Do(req)
	if err != nil {
		u.m.tokenRefresh(false)
		u.connFailed(err, &w)
		return "", fmt.Errorf("%w: token request: %s", errUpstream, describe(err))
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4096))
	if err != nil || res.StatusCode != http.StatusOK || len(body) == 0 {
		u.m.tokenRefresh(false)
		return "", fmt.Errorf("%w: token request answered %d", errUpstream, res.StatusCode)
	}
	u.storeToken(string(body), issued)
	u.m.tokenRefresh(true)
	return string(body), nil
}

// Waits after failed token requests: doubling from minTokenBackoff to
// maxTokenBackoff, so that a failing upstream is not asked on every miss.
const (
	minTokenBackoff = time.Second
	maxTokenBackoff = 30 * time.Second
)

// noteTokenResult starts or ends the backoff of token requests.
func (u *upstream) noteTokenResult(err error) {
	now := u.now()
	u.mu.Lock()
	if err == nil {
		u.retryAt, u.backoff = time.Time{}, 0
		u.mu.Unlock()
		return
	}
	u.backoff = min(max(u.backoff*2, minTokenBackoff), maxTokenBackoff)
	u.retryAt = now.Add(u.backoff)
	wait := u.backoff
	u.mu.Unlock()
	if u.life.Err() == nil { // not cut short by shutdown
		u.log.Warn("upstream token request failed", zap.Error(err),
			zap.Duration("next_try_in", wait))
	}
}

// storeToken keeps tok and plans its refresh at 70 to 80 percent of its
// lifetime, so that nodes started together do not refresh in step.
func (u *upstream) storeToken(tok string, issued time.Time) {
	life := u.tokenTTL
	jitter := time.Duration(rand.Int64N(int64(life)/10 + 1))
	u.mu.Lock()
	defer u.mu.Unlock()
	u.token = tok
	u.expiresAt = issued.Add(life - life/20)
	u.refreshAt = issued.Add(life*7/10 + jitter)
	u.log.Info("upstream token refreshed", zap.Time("refresh_at", u.refreshAt))
}

// dropToken forgets tok if it is still the one held.
func (u *upstream) dropToken(tok string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.token == tok {
		u.token, u.expiresAt, u.refreshAt = "", time.Time{}, time.Time{}
	}
}

// hasToken reports whether a valid token is held.
func (u *upstream) hasToken() bool {
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.token != "" && now.Before(u.expiresAt)
}
