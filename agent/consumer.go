package agent

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

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
	Groups   []uint32 // supplementary groups of a Unix peer (SO_PEERGROUPS)
	// GroupsUnknown is set when the peer's groups could not be read: group
	// deny rules then match it, group allow rules do not (fail closed).
	GroupsUnknown bool
	Addr          netip.Addr
	id            string // the limiter key, built once per connection
	tcp           bool   // known to have come over TCP
}

// String names the consumer for logs: "uid=1000 gid=1000" or an address.
func (c *Consumer) String() string { return c.id }

// ConnContext records the consumer behind conn; the agent's http.Server
// sets it as its ConnContext so that each request knows its consumer.
func (a *Agent) ConnContext(ctx context.Context, conn net.Conn) context.Context {
	return context.WithValue(ctx, consumerKey{}, consumerOf(conn))
}

func consumerOf(conn net.Conn) *Consumer {
	if hc, ok := conn.(*handedConn); ok {
		return hc.who // read when the lean path took the connection
	}
	for {
		nc, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = nc.NetConn() // under the connection limit's wrapper
	}
	if uc, ok := conn.(*net.UnixConn); ok {
		if c := peerCred(uc); c != nil {
			return c
		}
	}
	c := addrConsumer(conn.RemoteAddr().String())
	_, c.tcp = conn.(*net.TCPConn)
	return c
}

func addrConsumer(remote string) *Consumer {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return &Consumer{id: remote}
	}
	addr := ap.Addr().Unmap()
	return &Consumer{Addr: addr, id: addr.String()}
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
	groups, ok := peerGroups(raw)
	return &Consumer{Unix: true, UID: cred.Uid, GID: cred.Gid, Groups: groups,
		GroupsUnknown: !ok,
		id:            "uid=" + strconv.Itoa(int(cred.Uid)) + " gid=" + strconv.Itoa(int(cred.Gid))}
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13 and later): the peer's
// supplementary groups, so that a policy can grant access by membership.
// It returns nil where the kernel does not support it.
func peerGroups(raw syscall.RawConn) (groups []uint32, ok bool) {
	_ = raw.Control(func(fd uintptr) {
		// A peer in more groups than the buffer holds gets ERANGE with the
		// size needed; one more try with that size (NGROUPS_MAX is 65536).
		for n := 256; n <= 65536 && !ok; {
			buf := make([]uint32, n)
			size := uint32(n * 4)
			_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET,
				unix.SO_PEERGROUPS, uintptr(unsafe.Pointer(&buf[0])),
				uintptr(unsafe.Pointer(&size)), 0)
			switch {
			case errno == 0:
				groups, ok = buf[:size/4], true
			case errno == unix.ERANGE && int(size/4) > n:
				n = int(size / 4)
			default:
				return
			}
		}
	})
	return groups, ok
}

// consumerFrom returns the request's consumer, falling back to its remote
// address when the server set no ConnContext.
func consumerFrom(r *http.Request) *Consumer {
	if c, ok := r.Context().Value(consumerKey{}).(*Consumer); ok {
		return c
	}
	return addrConsumer(r.RemoteAddr)
}

// maxTrackedConsumers bounds the per-consumer limiters kept; the least
// recently seen consumer's limiter is dropped first.
const maxTrackedConsumers = 4096

// TODO(consumer): TCP consumers are told apart by source address only, so
// local processes behind interception share one bucket and one process
// with many loopback addresses gets many. Issue 7's closing note.
//
// consumerLimits gives each consumer a token bucket for the requests that
// start upstream work (misses that join no call under way) and for token
// requests, which fill a bounded store, so that one flooding
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
