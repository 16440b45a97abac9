package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// The lean path. Nearly every consumer request is a GET (or HEAD) of a
// plain path over HTTP/1.1 with no body, and nearly every answer is a
// cache hit. The agent's consumer listeners therefore read requests with a
// small HTTP/1.1 server of their own that answers exactly that subset with
// no allocation and none of net/http's per-request machinery. A request
// outside the subset (a token PUT, a proxy-form target, an escape, a body,
// HTTP/1.0, an odd header) is not refused: its connection, with every byte
// already read, is handed to net/http and the full handler for the rest of
// its life. The lean path makes the same checks in the same order as
// ServeHTTP and writes the same answers, so a consumer cannot tell which
// one served it but by speed; tests compare the two byte for byte.

// leanReadSize is the read buffer of a lean connection, held for its
// life: a request head that does not fit is not plain, and net/http takes
// it, with its own larger bound (maxHeaderBytes). Plain heads, SDKs' with
// a token included, take a few hundred bytes.
const leanReadSize = 2048

// leanWriteSize is the write buffer of a lean connection, held only while
// answers are written (see writer).
const leanWriteSize = 4096

// errNotLean is how a lean connection says that net/http must take over.
var errNotLean = errors.New("request outside the lean subset")

// leanServer serves the agent's consumer listeners. Create one with
// newLeanServer, call serve for each listener, and shutdown once.
type leanServer struct {
	a    *Agent
	slow *http.Server     // takes the connections handed off
	hand *handoffListener // through which they reach it
	date dateCache

	readHeaderTimeout, idleTimeout time.Duration

	closing atomic.Bool
	wg      sync.WaitGroup // one per connection on the lean path
	mu      sync.Mutex
	lns     []net.Listener
	conns   map[*leanConn]struct{}
}

// newLeanServer returns a lean server whose handed-off connections are
// served by slow, which it starts. Its timeouts are slow's.
func newLeanServer(a *Agent, slow *http.Server) *leanServer {
	s := &leanServer{a: a, slow: slow, hand: newHandoffListener(),
		readHeaderTimeout: slow.ReadHeaderTimeout, idleTimeout: slow.IdleTimeout,
		conns: make(map[*leanConn]struct{})}
	go func() { _ = slow.Serve(s.hand) }()
	return s
}

// serve accepts connections on ln until ln is closed; it returns nil when
// shutdown closed it.
func (s *leanServer) serve(ln net.Listener) error {
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	if s.closing.Load() {
		_ = ln.Close()
	}
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, say: wait, as net/http does,
			// rather than spin.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.a.log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", pause))
			time.Sleep(pause)
			continue
		}
		pause = 0
		if lc := s.track(c); lc != nil {
			go lc.serve()
		}
	}
}

// track registers a new connection, or closes it if shutdown has begun.
func (s *leanServer) track(c net.Conn) *leanConn {
	lc := &leanConn{s: s, conn: c}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		_ = c.Close()
		return nil
	}
	s.conns[lc] = struct{}{}
	s.wg.Add(1)
	return lc
}

func (s *leanServer) untrack(lc *leanConn) {
	s.mu.Lock()
	delete(s.conns, lc)
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown stops accepting, lets each connection finish the request it is
// reading or answering, and closes idle ones at once; at ctx's end it
// closes whatever is left. Then it shuts net/http's side down the same way.
func (s *leanServer) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	for lc := range s.conns {
		if lc.idle.Load() {
			_ = lc.conn.SetReadDeadline(time.Unix(1, 0))
		}
	}
	s.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.hand.Close() // a hand-off under way now closes its connection
		s.mu.Lock()
		for lc := range s.conns {
			_ = lc.conn.Close()
		}
		s.mu.Unlock()
		<-drained
	}
	if serr := s.slow.Shutdown(ctx); serr != nil {
		return errors.Join(err, serr, s.slow.Close())
	}
	return err
}

// leanConn is one consumer connection on the lean path.
type leanConn struct {
	s        *leanServer
	conn     net.Conn
	who      *Consumer
	br       *bufio.Reader
	bw       *bufio.Writer // nil but while answers are written: see writer
	deadline time.Time     // the read deadline set last
	now      time.Time     // when the last answer was written
	idle     atomic.Bool   // waiting for a request: shutdown may close it
	scratch  [20]byte      // for formatting numbers
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, leanReadSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, leanWriteSize) }}
)

// serve answers requests until the client leaves, an error, shutdown, or
// a request net/http must take.
func (c *leanConn) serve() {
	c.who = consumerOf(c.conn)
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.conn)
	handed := c.loop()
	c.release()
	c.s.untrack(c)
	if !handed {
		_ = c.conn.Close()
	}
}

// loop is serve's request loop; it reports whether the connection was
// handed to net/http.
func (c *leanConn) loop() (handed bool) {
	c.setDeadline(time.Now().Add(c.s.readHeaderTimeout))
	for first := true; ; first = false {
		n, err := c.readHead(first)
		if errors.Is(err, errNotLean) {
			return c.handOff()
		}
		if err != nil {
			return false
		}
		keep, err := c.answer(c.peekHead(n))
		if errors.Is(err, errNotLean) {
			return c.handOff()
		}
		_, _ = c.br.Discard(n)
		if err != nil || !keep {
			c.finish(err == nil)
			return false
		}
	}
}

func (c *leanConn) peekHead(n int) []byte {
	b, _ := c.br.Peek(n)
	return b
}

// readHead waits until the read buffer holds a whole request head and
// returns its length. errNotLean means the bytes are not a plain head and
// net/http is to read them; any other error ends the connection without
// an answer, as net/http ends one that closes or times out.
func (c *leanConn) readHead(first bool) (int, error) {
	if c.br.Buffered() == 0 {
		if err := c.flush(); err != nil {
			return 0, err
		}
		if err := c.waitIdle(first); err != nil {
			return 0, err
		}
	}
	for timed := false; ; {
		buf := c.peekHead(c.br.Buffered())
		n, plain := headLen(buf)
		switch {
		case n > 0:
			c.idle.Store(false)
			return n, nil
		case (!plain || len(buf) == leanReadSize) && (first || len(buf) >= 4):
			return 0, errNotLean // later requests: see the Peek below
		case len(buf) > 0 && !timed:
			// The head has begun: it must now arrive within the bound.
			c.idle.Store(false)
			c.setDeadline(time.Now().Add(c.s.readHeaderTimeout))
			timed = true
		}
		// Answers written so far go out before a read that may wait.
		if err := c.flush(); err != nil {
			return 0, err
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			// As net/http: a client that leaves, or times out, before its
			// head is whole gets no answer, nor one that leaves within
			// the first 4 bytes of a request after the first; what it
			// would answer to any other partial head, it answers.
			var ne net.Error
			if len(buf) == 0 || errors.As(err, &ne) && ne.Timeout() || !first && len(buf) < 4 {
				return 0, err
			}
			return 0, errNotLean
		}
	}
}

// waitIdle readies the connection to wait for its next request: under the
// idle timeout (the first one under the header timeout set at accept), and
// closable by shutdown. The deadline is set before the idle mark, so that
// a past deadline set by shutdown is the one that stays.
func (c *leanConn) waitIdle(first bool) error {
	// Moving a deadline costs a timer update: skip it while the one set
	// is within a second of the exact idle bound.
	want := c.now.Add(c.s.idleTimeout)
	if !first && want.Sub(c.deadline) > time.Second {
		c.setDeadline(want)
	}
	c.idle.Store(true)
	if c.s.closing.Load() {
		return net.ErrClosed
	}
	return nil
}

func (c *leanConn) setDeadline(t time.Time) {
	c.deadline = t
	_ = c.conn.SetReadDeadline(t)
}

// rstAvoidance is how long a connection closed after an answer waits for
// the client to close first, as net/http waits: closing with unread bytes
// (a request pipelined after "Connection: close") would send a reset that
// can destroy the answer in flight.
const rstAvoidance = 500 * time.Millisecond

// finish ends a connection after its last answer: flushed, half-closed so
// that the client reads the answer, and what the client still sends read
// and dropped until it closes or rstAvoidance passes.
func (c *leanConn) finish(flush bool) {
	if flush && c.flush() != nil {
		return
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	if flush {
		_ = c.conn.SetReadDeadline(time.Now().Add(rstAvoidance))
		_, _ = io.Copy(io.Discard, c.conn)
	}
}

// handOff gives the connection, with the bytes read but not answered, to
// net/http. It reports true unless flushing the answers before failed.
func (c *leanConn) handOff() bool {
	if c.flush() != nil {
		return false
	}
	pending := bytes.Clone(c.peekHead(c.br.Buffered()))
	c.s.hand.give(&handedConn{Conn: c.conn, pending: pending, who: c.who})
	return true
}

// writer returns the write buffer, taken from the pool for the answers
// until the next flush. A connection holds none while it waits: a
// thousand waiting on one upstream answer would hold 4 MiB of them.
func (c *leanConn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(c.conn)
	}
	return c.bw
}

// flush writes the answers buffered, if any, and returns the write buffer
// to the pool.
func (c *leanConn) flush() error {
	if c.bw == nil {
		return nil
	}
	err := c.bw.Flush()
	c.putWriter()
	return err
}

func (c *leanConn) putWriter() {
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
	c.bw = nil
}

// release returns the buffers to their pools, what is buffered unwritten
// dropped; the connection is no longer read or written here.
func (c *leanConn) release() {
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
	if c.bw != nil {
		c.putWriter()
	}
}

// handoffListener is the listener net/http serves handed-off connections
// from. It is safe for concurrent use.
type handoffListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// give passes c to net/http, or closes it if net/http has stopped.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "lean-path handoff" }

// handedConn is a connection net/http takes over from the lean path: its
// first reads return the bytes the lean path had read and not answered.
type handedConn struct {
	net.Conn
	pending []byte
	who     *Consumer
}

func (h *handedConn) Read(p []byte) (int, error) {
	if len(h.pending) > 0 {
		n := copy(p, h.pending)
		h.pending = h.pending[n:]
		return n, nil
	}
	return h.Conn.Read(p)
}

// CloseWrite lets net/http half-close before it closes, so that a final
// answer is not lost to a reset.
func (h *handedConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the connection underneath.
func (h *handedConn) NetConn() net.Conn { return h.Conn }
