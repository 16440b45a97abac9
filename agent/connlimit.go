package agent

import (
	"net"
	"sync"
)

// connLimit bounds the connections served at once over every listener it
// wraps. At the bound, each listener holds one accepted connection unserved
// until another closes, and further clients wait in the kernel's backlog
// instead of costing the agent a goroutine and buffers each. It is safe
// for concurrent use.
type connLimit struct {
	slots chan struct{}
}

func newConnLimit(n int) *connLimit {
	return &connLimit{slots: make(chan struct{}, n)}
}

// wrap returns ln with its connections counted against l.
func (l *connLimit) wrap(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, limit: l, closed: make(chan struct{})}
}

// open returns how many connections hold a slot.
func (l *connLimit) open() int { return len(l.slots) }

type limitListener struct {
	net.Listener
	limit  *connLimit
	closed chan struct{}
	once   sync.Once
}

// Accept takes a connection, then waits for a free slot before handing it
// over. Waiting after the accept, not before, keeps a listener that has no
// client from holding a slot another listener's client needs.
func (ll *limitListener) Accept() (net.Conn, error) {
	c, err := ll.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case ll.limit.slots <- struct{}{}:
		return &limitConn{Conn: c, limit: ll.limit}, nil
	case <-ll.closed:
		_ = c.Close()
		return nil, net.ErrClosed
	}
}

// Close also ends an Accept waiting for a slot.
func (ll *limitListener) Close() error {
	ll.once.Do(func() { close(ll.closed) })
	return ll.Listener.Close()
}

// limitConn gives its slot back on its first Close.
type limitConn struct {
	net.Conn
	limit *connLimit
	once  sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.limit.slots })
	return err
}

// CloseWrite lets net/http half-close before closing, as it does on a bare
// TCP or Unix connection, so that a final answer is not lost to a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the connection underneath, for ConnContext to read a
// Unix peer's credentials from.
func (c *limitConn) NetConn() net.Conn { return c.Conn }
