package simulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	DefaultCredentialLifetime = 6 * time.Hour
	DefaultRotateBefore       = time.Hour
)

// Options configures a Server. The zero value serves DefaultInstance on
// the real clock, tokenless reads allowed, without throttling.
type Options struct {
	// Instance is the data served; nil: DefaultInstance(). It is copied.
	Instance *Instance
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// HardenedOnly answers tokenless reads with 401.
	HardenedOnly bool
	// RateLimit is the rate in requests per second above which 429 is
	// answered; 0: unlimited.
	RateLimit float64
	// Burst is the token bucket size; 0: max(1, int(RateLimit)).
	Burst int
	// CredentialLifetime is Expiration - LastUpdated; 0: 6h.
	CredentialLifetime time.Duration
	// RotateBefore is how long before expiry credentials are rotated,
	// checked with Now on each read; 0: 1h. It must be below the lifetime.
	RotateBefore time.Duration
}

// Server is a simulated metadata service. Create it with New or Start; it
// is safe for concurrent use.
type Server struct {
	now      func() time.Time
	tokens   *tokenStore
	creds    *credStore
	faults   *faultSet
	stats    *counters
	hardened atomic.Bool
	limiter  atomic.Pointer[rate.Limiter]
	tree     atomic.Pointer[node]

	mu      sync.Mutex // guards st, closed and tree rebuilds
	st      state
	closed  bool
	closing chan struct{} // closed by Close to end hanging handlers
	active  sync.WaitGroup

	ln        net.Listener
	srv       *http.Server
	served    chan struct{} // closed when Serve returns
	closeOnce sync.Once
	closeErr  error
}

// New returns a Server that does not listen; serve its Handler.
func New(opts Options) (*Server, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	s := &Server{
		now:     opts.Now,
		tokens:  newTokenStore(maxTokens),
		creds:   newCredStore(opts.Now(), opts.CredentialLifetime, opts.RotateBefore),
		faults:  newFaultSet(),
		stats:   newCounters(),
		closing: make(chan struct{}),
	}
	s.hardened.Store(opts.HardenedOnly)
	s.SetRateLimit(opts.RateLimit, opts.Burst)
	s.st = state{inst: opts.Instance, publicIP: opts.Instance.PublicIPv4}
	s.tree.Store(buildTree(s.st))
	return s, nil
}

// fill validates o and replaces zero values by defaults. The instance is
// copied so that the caller's later edits do not reach the server.
func (o *Options) fill() error {
	if o.Instance == nil {
		o.Instance = DefaultInstance()
	}
	if err := o.Instance.Validate(); err != nil {
		return fmt.Errorf("new simulator: %w", err)
	}
	o.Instance = o.Instance.clone()
	if o.Now == nil {
		o.Now = time.Now
	}
	o.CredentialLifetime = orDefault(o.CredentialLifetime, DefaultCredentialLifetime)
	o.RotateBefore = orDefault(o.RotateBefore, DefaultRotateBefore)
	switch {
	case o.RateLimit < 0 || o.Burst < 0:
		return fmt.Errorf("new simulator: rate limit %v and burst %d: want 0 or more",
			o.RateLimit, o.Burst)
	case o.CredentialLifetime < 0 || o.RotateBefore < 0:
		return errors.New("new simulator: credential durations must not be negative")
	case o.RotateBefore >= o.CredentialLifetime:
		return fmt.Errorf("new simulator: rotate before %v: want less than the "+
			"credential lifetime %v", o.RotateBefore, o.CredentialLifetime)
	}
	return nil
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Start listens on addr, a TCP host:port such as "127.0.0.1:0", and
// serves in a goroutine until Close.
func Start(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}
	s, err := Serve(ln, opts)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	return s, nil
}

// Serve serves on ln, which may be a Unix socket listener, in a goroutine
// until Close. The Server takes ln over and closes it; on error ln is left
// to the caller.
func Serve(ln net.Listener, opts Options) (*Server, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // always an error; ErrServerClosed after Close
	}()
	return s, nil
}

// Handler returns the HTTP handler serving the simulated service and the
// /_simulator/ control surface.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// URL returns "http://HOST:PORT" when listening on TCP, else "".
func (s *Server) URL() string {
	if s.ln == nil || s.ln.Addr().Network() != "tcp" {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Addr returns the listening address (a socket path for Unix sockets), or
// "" when not listening.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops listening, ends hanging and delayed handlers and waits for
// every handler to return. It is idempotent; later calls return the first
// call's result. Requests reaching the Handler after Close answer 503.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.mu.Unlock()
		if s.srv != nil {
			s.closeErr = s.srv.Close()
			<-s.served
		}
		s.active.Wait()
	})
	return s.closeErr
}

// Shutdown stops listening and waits for in-flight requests to finish
// until ctx is done, then closes like Close (ending hung ones). It returns
// ctx's error when the wait was cut short.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.srv != nil {
		err = s.srv.Shutdown(ctx)
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// enter registers a handler, or reports false once closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active.Add(1)
	return true
}

// SetFault injects f into the answers to requests whose cleaned path
// starts with pathPrefix ("" matches every path). The longest matching
// prefix applies. A Fault that changes nothing removes pathPrefix's fault.
// Paths under /_simulator/ are never faulted.
func (s *Server) SetFault(pathPrefix string, f Fault) {
	s.faults.set(pathPrefix, f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.faults.clear()
}

// Faults returns the faults in place by prefix, with their remaining Count.
func (s *Server) Faults() map[string]Fault {
	return s.faults.snapshot()
}

// RotateCredentials issues a new set of credentials now.
func (s *Server) RotateCredentials() {
	s.creds.rotate(s.now())
}

// Credentials returns the set served now for role, rotating it first if
// due; false when role is not the instance's role.
func (s *Server) Credentials(role string) (Credentials, bool) {
	s.mu.Lock()
	own := s.st.inst.RAMRole
	s.mu.Unlock()
	if role == "" || role != own {
		return Credentials{}, false
	}
	return s.creds.get(s.now()), true
}

// SetSpotTermination makes instance/spot/termination-time answer t, in
// UTC as 2006-01-02T15:04:05Z; the zero time makes it 404 again.
func (s *Server) SetSpotTermination(t time.Time) {
	s.update(func(st *state) { st.spot = t })
}

// BindPublicIP makes public-ipv4 and eipv4 answer ip, served as given;
// "" unbinds, and both answer 404.
func (s *Server) BindPublicIP(ip string) {
	s.update(func(st *state) { st.publicIP = ip })
}

// SetInstance replaces the data served, as when NICs are hot-plugged. The
// public IP becomes inst's; a spot termination time stays. Credentials are
// rotated when the role changes.
func (s *Server) SetInstance(inst *Instance) error {
	if err := inst.Validate(); err != nil {
		return fmt.Errorf("set instance: %w", err)
	}
	var roleChanged bool
	s.update(func(st *state) {
		roleChanged = st.inst.RAMRole != inst.RAMRole
		st.inst = inst.clone()
		st.publicIP = inst.PublicIPv4
	})
	if roleChanged {
		s.RotateCredentials()
	}
	return nil
}

// update changes the state and rebuilds the tree.
func (s *Server) update(change func(*state)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.st)
	s.tree.Store(buildTree(s.st))
}

// SetHardenedOnly switches whether tokenless reads answer 401.
func (s *Server) SetHardenedOnly(on bool) {
	s.hardened.Store(on)
}

// SetRateLimit sets the throttling rate in requests per second (0 or less:
// unlimited) and the burst (0 or less: max(1, int(rps))). The bucket
// starts full.
func (s *Server) SetRateLimit(rps float64, burst int) {
	if !(rps > 0) { // also NaN
		s.limiter.Store(nil)
		return
	}
	if burst <= 0 {
		burst = max(1, int(rps))
	}
	s.limiter.Store(rate.NewLimiter(rate.Limit(rps), burst))
}

// allow takes a token from the bucket at Now.
func (s *Server) allow() bool {
	l := s.limiter.Load()
	return l == nil || l.AllowN(s.now(), 1)
}

// RevokeTokens forgets every issued token: reads carrying one answer 401.
func (s *Server) RevokeTokens() {
	s.tokens.revoke()
}

// Value returns the exact bytes a GET of path (which may carry a query,
// for pkcs7's audience) would answer now with 200, ignoring faults, tokens
// and throttling; false when it would not answer 200.
func (s *Server) Value(path string) ([]byte, bool) {
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, false
	}
	a, ok := s.resolve(u)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), a.body...), true
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return s.stats.snapshot()
}

// ResetStats sets every counter to zero.
func (s *Server) ResetStats() {
	s.stats.reset()
}
