package clients

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// relay is what HTTP_PROXY names for the whole test process. Go reads the
// proxy environment once per process while each test starts its own agent
// on a new port, so the relay passes every connection, byte for byte, to
// the agent the running test named; with none named it closes the
// connection, so that nothing can leave the machine. It is safe for
// concurrent use.
type relay struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	target string
	open   map[net.Conn]struct{}
	closed bool
}

// startRelay listens on 127.0.0.1 and serves until close.
func startRelay() (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &relay{ln: ln, open: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// addr is the relay's HOST:PORT.
func (r *relay) addr() string { return r.ln.Addr().String() }

// point sends the connections opened until the test ends to target, a
// loopback HOST:PORT; at the end it cuts every connection still open.
func (r *relay) point(t *testing.T, target string) {
	t.Helper()
	host, _, err := net.SplitHostPort(target)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("relay target %q is not a loopback address", target)
	}
	r.mu.Lock()
	r.target = target
	r.mu.Unlock()
	t.Cleanup(func() {
		r.mu.Lock()
		r.target = ""
		r.mu.Unlock()
		r.cutAll()
	})
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.pipe(c)
	}
}

// pipe copies both ways between the client's connection and the target's
// until either side closes.
func (r *relay) pipe(down net.Conn) {
	defer r.wg.Done()
	up, err := r.dial()
	if err != nil || !r.track(down, up) {
		_ = down.Close()
		if up != nil {
			_ = up.Close()
		}
		return
	}
	defer r.untrack(down, up)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, down)
		close(done)
	}()
	_, _ = io.Copy(down, up)
	_ = down.Close()
	_ = up.Close()
	<-done
}

func (r *relay) dial() (net.Conn, error) {
	r.mu.Lock()
	target := r.target
	r.mu.Unlock()
	if target == "" {
		return nil, errors.New("relay: no agent named")
	}
	return net.DialTimeout("tcp", target, 2*time.Second)
}

// track records an open pair; it reports false once the relay is closing.
func (r *relay) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	for _, c := range conns {
		r.open[c] = struct{}{}
	}
	return true
}

func (r *relay) untrack(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		delete(r.open, c)
	}
}

// cutAll closes every open connection, so that no client keeps an idle
// connection to an agent that is going away.
func (r *relay) cutAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.open {
		_ = c.Close()
	}
}

// close stops the relay and waits for its goroutines.
func (r *relay) close() {
	r.mu.Lock()
	r.closed, r.target = true, ""
	r.mu.Unlock()
	_ = r.ln.Close()
	r.cutAll()
	r.wg.Wait()
}
