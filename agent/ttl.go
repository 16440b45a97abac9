package agent

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"
)

// TTLRule gives the items under Prefix (below the meta-data root, matched
// without regard to case) a fresh lifetime. A TTL of 0 means never cached.
type TTLRule struct {
	Prefix string
	TTL    time.Duration
}

// Lifetimes by kind, as SPEC describes: values fixed for the instance's
// life are kept long, values that change at run time briefly, the spot
// termination notice never.
const (
	longTTL     = time.Hour
	shortTTL    = 10 * time.Second
	defaultTTL  = time.Minute
	notFoundTTL = 5 * time.Second
	staleFor    = time.Hour
)

// DefaultTTLRules is the per-kind table an operator's --ttl rules extend
// or override.
var DefaultTTLRules = []TTLRule{
	{"instance/spot/termination-time", 0},
	{"instance-id", longTTL},
	{"region-id", longTTL},
	{"zone-id", longTTL},
	{"owner-account-id", longTTL},
	{"serial-number", longTTL},
	{"image-id", longTTL},
	{"instance/instance-type", longTTL},
	{"public-ipv4", shortTTL},
	{"eipv4", shortTTL},
	{"private-ipv4", shortTTL},
	{"mac", shortTTL},
	{"network/", shortTTL},
	{"all", shortTTL},
	{"ram/security-credentials/", shortTTL},
}

// ParseTTLRule reads "PREFIX=DURATION", as --ttl takes it.
func ParseTTLRule(s string) (TTLRule, error) {
	prefix, d, ok := strings.Cut(s, "=")
	prefix = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(prefix), "/"))
	ttl, err := time.ParseDuration(strings.TrimSpace(d))
	if !ok || prefix == "" || err != nil || ttl < 0 || ttl > 24*time.Hour ||
		!plainASCII(prefix, `\?#%`) {
		return TTLRule{}, fmt.Errorf("want PREFIX=DURATION, a meta-data path prefix and 0 to 24h")
	}
	return TTLRule{Prefix: prefix, TTL: ttl}, nil
}

// ttlPolicy decides how long each answer stays fresh and how long it may
// then be served stale when upstream fails.
type ttlPolicy struct {
	rules    []TTLRule // longest prefix first
	notFound time.Duration
	staleFor time.Duration
	creds    credentialsPolicy
}

func newTTLPolicy(cfg Config) ttlPolicy {
	byPrefix := map[string]time.Duration{}
	for _, r := range append(append([]TTLRule(nil), DefaultTTLRules...), cfg.TTLRules...) {
		byPrefix[strings.ToLower(r.Prefix)] = r.TTL
	}
	rules := make([]TTLRule, 0, len(byPrefix))
	for p, ttl := range byPrefix {
		rules = append(rules, TTLRule{p, ttl})
	}
	sort.Slice(rules, func(i, j int) bool { return len(rules[i].Prefix) > len(rules[j].Prefix) })
	return ttlPolicy{rules: rules, notFound: cfg.NotFoundTTL, staleFor: cfg.StaleFor,
		creds: credentialsPolicy{refreshBefore: cfg.CredentialsRefreshBefore,
			jitter: cfg.CredentialsRefreshBefore / 4, retry: 30 * time.Second}}
}

// credentialsPolicy says how long credentials are served from cache:
// fresh until a jittered refreshBefore ahead of their Expiration, then
// served while a background refresh runs, and never past Expiration.
type credentialsPolicy struct {
	refreshBefore time.Duration
	jitter        time.Duration // added to refreshBefore, at random, so nodes differ
	// retry is how long a set already inside its refresh window is kept
	// fresh, so that upstream is asked again on a schedule rather than on
	// every request while it still hands out the same set.
	retry time.Duration
}

// plan says whether and how an answer is cached: fresh until fresh, then
// servable stale until stale. With revalidate, a stale entry is served at
// once while a refresh runs; without, only when upstream fails.
type plan struct {
	store        bool
	fresh, stale time.Time
	revalidate   bool
}

// lifetime plans the caching of r, the answer for pathQuery, at now.
func (p ttlPolicy) lifetime(pathQuery string, r *response, now time.Time) plan {
	item, inMeta := metaDataItem(pathQuery)
	ttl := defaultTTL
	if inMeta {
		ttl = p.ttl(item)
	}
	switch {
	case ttl == 0:
		return plan{}
	case r.status == http.StatusNotFound:
		return plan{store: p.notFound > 0, fresh: now.Add(min(ttl, p.notFound))}
	case r.status != http.StatusOK:
		return plan{}
	case inMeta && isCredentials(item):
		return p.creds.lifetime(r, now)
	}
	return plan{store: true, fresh: now.Add(ttl), stale: now.Add(ttl + p.staleFor)}
}

func (p ttlPolicy) ttl(item string) time.Duration {
	for _, r := range p.rules {
		if strings.HasPrefix(item, r.Prefix) {
			return r.TTL
		}
	}
	return defaultTTL
}

func (p credentialsPolicy) lifetime(r *response, now time.Time) plan {
	exp, ok := credentialsExpiration(r.body)
	if !ok || !now.Before(exp) {
		return plan{}
	}
	fresh := exp.Add(-p.refreshBefore - randDuration(p.jitter))
	if !now.Before(fresh) {
		fresh = earlier(now.Add(p.retry), exp)
	}
	return plan{store: true, fresh: fresh, stale: exp, revalidate: true}
}

func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
