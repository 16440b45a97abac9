package agent

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// consumerKey keys the consumer identity in a connection's context.
type consumerKey struct{}

// Consumer is who sent a request: the peer's uid and gid on a Unix socket,
// or the source address on TCP.
type Consumer struct {
	Unix     bool
	UID, GID uint32
	Addr     net.IP
	id       string // the limiter key, built once per connection
}

// String names the consumer for logs: "uid=1000 gid=1000" or an address.
func (c *Consumer) String() string { return c.id }

// ConnContext records the consumer behind conn; the agent's http.Server
// sets it as its ConnContext so that each request knows its consumer.
func (a *Agent) ConnContext(ctx context.Context, conn net.Conn) context.Context {
	return context.WithValue(ctx, consumerKey{}, consumerOf(conn))
}

func consumerOf(conn net.Conn) *Consumer {
	if uc, ok := conn.(*net.UnixConn); ok {
		if c := peerCred(uc); c != nil {
			return c
		}
	}
	host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
	return &Consumer{Addr: net.ParseIP(host), id: host}
}

// peerCred reads SO_PEERCRED: the uid and gid of the process that
// connected.
func peerCred(uc *net.UnixConn) *Consumer {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return nil
	}
	return &Consumer{Unix: true, UID: cred.Uid, GID: cred.Gid,
		id: "uid=" + strconv.Itoa(int(cred.Uid)) + " gid=" + strconv.Itoa(int(cred.Gid))}
}

// consumerFrom returns the request's consumer, falling back to its remote
// address when the server set no ConnContext.
func consumerFrom(r *http.Request) *Consumer {
	if c, ok := r.Context().Value(consumerKey{}).(*Consumer); ok {
		return c
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return &Consumer{Addr: net.ParseIP(host), id: host}
}

func consumerOrNil(r *http.Request) *Consumer {
	if r == nil {
		return nil
	}
	return consumerFrom(r)
}

// maxTrackedConsumers bounds the per-consumer limiters kept; the least
// recently seen consumer's limiter is dropped first.
const maxTrackedConsumers = 4096

// consumerLimits gives each consumer a token bucket for the requests that
// cost upstream work (misses and token requests), so that one flooding
// consumer is answered 429 while the others are served. Hits cost nothing
// upstream and are not limited. It is safe for concurrent use.
type consumerLimits struct {
	rate  rate.Limit
	burst int

	mu       sync.Mutex
	limiters *lru.LRU[string, *rate.Limiter]
}

func newConsumerLimits(perSecond float64, burst int) *consumerLimits {
	l, _ := lru.NewLRU[string, *rate.Limiter](maxTrackedConsumers, nil)
	return &consumerLimits{rate: rate.Limit(perSecond), burst: burst, limiters: l}
}

// allow reports whether c may make one more upstream-bound request now.
func (cl *consumerLimits) allow(c *Consumer) bool {
	if cl.rate == 0 {
		return true
	}
	cl.mu.Lock()
	l, ok := cl.limiters.Get(c.id)
	if !ok {
		l = rate.NewLimiter(cl.rate, cl.burst)
		cl.limiters.Add(c.id, l)
	}
	cl.mu.Unlock()
	return l.Allow()
}
