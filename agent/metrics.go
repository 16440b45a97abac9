package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "ecs_metadata_agent"

// Upstream outcomes, the only values of the outcome label.
const (
	outcomeOK           = "ok"
	outcomeNotFound     = "not_found"
	outcomeUnauthorized = "unauthorized"
	outcomeThrottled    = "throttled"
	outcomeClientError  = "client_error"
	outcomeServerError  = "server_error"
	outcomeTimeout      = "timeout"
	outcomeError        = "error"
	outcomeLimited      = "limited" // not sent: over the agent's own rate
)

// metrics are the agent's Prometheus series. Counters on the hit path are
// resolved once, so that counting a hit is one atomic add.
type metrics struct {
	hits, misses, stale, collapsed prometheus.Counter
	upstreamBy                     *prometheus.CounterVec
	upstreamTime                   prometheus.Histogram
	tokenOK, tokenErr              prometheus.Counter
	consumerTokens                 prometheus.Counter
	denials                        prometheus.Counter
	byClass                        [6]prometheus.Counter // index: status / 100
	ready                          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, cacheStats func() (entries, bytes float64)) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: name, Help: help})
	}
	tokens := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "token_refreshes_total", Help: "Upstream token requests, by result."},
		[]string{"result"})
	m := &metrics{
		hits:      counter("cache_hits_total", "Answers served fresh from cache."),
		misses:    counter("cache_misses_total", "Lookups that needed upstream."),
		stale:     counter("stale_served_total", "Answers served stale from cache."),
		collapsed: counter("collapsed_waits_total", "Misses that joined an upstream call under way."),
		upstreamBy: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "upstream_requests_total", Help: "Upstream metadata requests, by outcome."},
			[]string{"outcome"}),
		upstreamTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace,
			Name: "upstream_request_duration_seconds",
			Help: "Time from sending an upstream metadata request to the end of its " +
				"answer's body, or to its failure; requests not sent are left out.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		tokenOK:  tokens.WithLabelValues("ok"),
		tokenErr: tokens.WithLabelValues("error"),
		consumerTokens: counter("consumer_tokens_issued_total",
			"Tokens issued to consumers, locally."),
		denials: counter("policy_denials_total", "Requests denied by the access policy."),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "ready", Help: "1 once the agent holds an upstream token and is warm."}),
	}
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "responses_total", Help: "Answers to consumers, by status code class."},
		[]string{"code"})
	for _, o := range []string{outcomeOK, outcomeNotFound, outcomeUnauthorized,
		outcomeThrottled, outcomeClientError, outcomeServerError, outcomeTimeout,
		outcomeError, outcomeLimited} {
		m.upstreamBy.WithLabelValues(o) // every outcome exported from the start, at 0
	}
	for class := 2; class <= 5; class++ {
		m.byClass[class] = responses.WithLabelValues(strconv.Itoa(class) + "xx")
	}
	gauge := func(name, help string, pick func(e, b float64) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace,
			Name: name, Help: help}, func() float64 { return pick(cacheStats()) })
	}
	reg.MustRegister(m.hits, m.misses, m.stale, m.collapsed, m.upstreamBy, m.upstreamTime, tokens,
		m.consumerTokens, m.denials, responses, m.ready,
		gauge("cache_entries", "Entries in the cache.", func(e, _ float64) float64 { return e }),
		gauge("cache_bytes", "Weight of the cache: keys, bodies and bookkeeping.",
			func(_, b float64) float64 { return b }))
	return m
}

// respond counts one answer to a consumer by its status class.
func (m *metrics) respond(status int) {
	class := status / 100
	if class < 2 || class > 5 {
		class = 5
	}
	m.byClass[class].Inc()
}

func (m *metrics) upstream(outcome string) { m.upstreamBy.WithLabelValues(outcome).Inc() }

func (m *metrics) tokenRefresh(ok bool) {
	if ok {
		m.tokenOK.Inc()
		return
	}
	m.tokenErr.Inc()
}

// outcomeOf classifies an upstream answer or transport error.
func outcomeOf(status int, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return outcomeTimeout
	case err != nil:
		return outcomeError
	case status == http.StatusOK:
		return outcomeOK
	case status == http.StatusNotFound:
		return outcomeNotFound
	case status == http.StatusUnauthorized:
		return outcomeUnauthorized
	case status == http.StatusTooManyRequests:
		return outcomeThrottled
	case status >= 500:
		return outcomeServerError
	}
	return outcomeClientError
}
