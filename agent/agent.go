package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/cache"
)

// Options are the agent's collaborators; every field may be left zero.
type Options struct {
	Logger   *zap.Logger          // nil: no logging
	Registry *prometheus.Registry // nil: a registry of the agent's own
	Now      func() time.Time     // nil: time.Now
}

// Agent serves metadata to local consumers from a cache filled through one
// upstream token. Use New, then Start, then Close.
type Agent struct {
	cfg    Config
	log    *zap.Logger
	reg    *prometheus.Registry
	now    func() time.Time
	cache  *cache.Cache[*response]
	up     *upstream
	flight flight[*response]
	tokens *tokenStore
	m      *metrics
	ready  atomic.Bool

	downUntil atomic.Int64 // unix nanoseconds: see upstreamDown

	ttl         ttlPolicy
	consumers   *consumerLimits
	revalidated sync.Map // keys whose entries are refreshed ahead (credentials)

	ctx    context.Context // the agent's lifetime: upstream calls belong to it
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and builds an agent. It makes no upstream request.
func New(cfg Config, o Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	c, err := cache.New(cache.Options[*response]{
		MaxEntries: cfg.CacheEntries,
		MaxBytes:   cfg.CacheBytes,
		Size:       entrySize,
		Now:        o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{cfg: cfg, log: o.Logger, reg: o.Registry, now: o.Now, cache: c,
		tokens:    newTokenStore(o.Now, maxConsumerTokens),
		ttl:       newTTLPolicy(cfg),
		consumers: newConsumerLimits(cfg.ConsumerRate, cfg.ConsumerBurst)}
	a.m = newMetrics(o.Registry, a.cacheStats)
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.up = newUpstream(a.ctx, cfg, o.Now, o.Logger, a.m)
	return a, nil
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	// Per-request warnings (throttled, denied, degraded) come in floods when
	// a consumer misbehaves: past 10 a second of one message, 1 in 100 is
	// kept, so that the journal's own rate limit never hides the rest. The
	// metrics count every one.
	o.Logger = o.Logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 10, 100)
	}))
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func (a *Agent) cacheStats() (entries, bytes float64) {
	s := a.cache.Stats()
	return float64(s.Entries), float64(s.Bytes)
}

// Start fetches the first upstream token in the background, retrying with
// backoff, warms the cache, and then marks the agent ready and calls
// onReady, if not nil. Until Close it keeps the token refreshed and
// refreshes credentials ahead of their expiry.
func (a *Agent) Start(onReady func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if !a.firstToken() {
			return
		}
		a.warm()
		a.ready.Store(true)
		a.m.ready.Set(1)
		a.log.Info("ready")
		if onReady != nil {
			onReady()
		}
		a.maintain()
	}()
}

// firstToken retries until a token is held; false means Close came first.
func (a *Agent) firstToken() bool {
	backoff := 100 * time.Millisecond
	for !a.up.hasToken() {
		_, err := a.up.currentToken(a.ctx)
		if err == nil {
			continue
		}
		a.log.Warn("upstream token unavailable, retrying",
			zap.Duration("backoff", backoff), zap.Error(err))
		if !sleepCtx(a.ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return true
}

// maintain runs Maintain every tick until Close.
func (a *Agent) maintain() {
	tick := min(a.cfg.TokenTTL/10, 30*time.Second)
	for sleepCtx(a.ctx, tick) {
		a.Maintain()
	}
}

// Maintain is one round of the background work Start runs every 30 s (or
// a tenth of the token's lifetime, if shorter): it refreshes the upstream
// token if due, so that the first request after a quiet spell never waits,
// and refreshes credentials that are due, returning once both are done.
// Tests on a fake clock call it instead of waiting for the tick.
func (a *Agent) Maintain() {
	if _, err := a.up.currentToken(a.ctx); err != nil {
		a.log.Warn("upstream token refresh failed", zap.Error(err))
	}
	for _, c := range a.prefetch() {
		select {
		case <-c.done:
		case <-a.ctx.Done():
			return
		}
	}
}

// prefetch refreshes every revalidated entry (credentials) that is due,
// or gone, in the background and returns the calls it started.
func (a *Agent) prefetch() []*call[*response] {
	var started []*call[*response]
	a.revalidated.Range(func(k, _ any) bool {
		switch _, state := a.cache.Peek(k.(string)); state {
		case cache.Stale:
			started = append(started, a.refresh(k.(string)))
		case cache.Miss: // evicted or expired: a consumer's next read fetches it
			a.revalidated.Delete(k)
		}
		return true
	})
	return started
}

// warm fetches the configured warm-up paths, in parallel, until they are
// cached or the warm-up deadline passes.
func (a *Agent) warm() {
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.WarmupTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range a.cfg.Warmup {
		if p == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.warmPath(ctx, p)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		a.log.Warn("warm-up deadline passed, ready anyway",
			zap.Duration("warmup_timeout", a.cfg.WarmupTimeout))
	}
}

// warmPath fetches p; "{roles}" in it stands for each role in the role
// listing.
func (a *Agent) warmPath(ctx context.Context, p string) {
	prefix, suffix, hasRoles := strings.Cut(p, rolesToken)
	if !hasRoles {
		_, _ = a.lookup(ctx, p, nil)
		return
	}
	listing, err := a.lookup(ctx, rolesListing, nil)
	if err != nil || listing.status != http.StatusOK {
		return
	}
	for _, role := range strings.Fields(string(listing.body)) {
		if checkPath(prefix+role+suffix, "") == nil {
			_, _ = a.lookup(ctx, prefix+role+suffix, nil)
		}
	}
}

// Ready reports whether the agent holds an upstream token and is warm.
func (a *Agent) Ready() bool { return a.ready.Load() }

// Close stops background work and cancels upstream calls under way.
func (a *Agent) Close() {
	a.cancel()
	a.wg.Wait()
}

// AdminHandler serves /healthz, /readyz and /metrics. It is never mounted
// on a consumer listener.
func (a *Agent) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Ready() {
			http.Error(w, "not ready: waiting for the upstream token and warm-up",
				http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	return mux
}
