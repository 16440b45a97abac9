package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// Bounds on what one consumer connection may cost.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
)

// Run serves cfg until ctx is done, then stops accepting, drains within
// cfg.ShutdownTimeout and removes the sockets it created. It tells systemd
// when it is ready and when it stops, if systemd started it.
func Run(ctx context.Context, cfg Config, log *zap.Logger) error {
	if cfg.Simulate {
		sim, err := simulator.Start("127.0.0.1:0", simulator.Options{})
		if err != nil {
			return fmt.Errorf("simulator: %w", err)
		}
		defer sim.Close()
		cfg.Upstream = sim.URL()
		log.Info("serving from the built-in simulator", zap.String("upstream", cfg.Upstream))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := New(cfg, Options{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	defer a.Close()
	lns, err := openListeners(cfg)
	if err != nil {
		return err
	}
	return a.serve(ctx, lns)
}

func (a *Agent) serve(ctx context.Context, lns *listeners) error {
	errc := make(chan error, len(lns.consumer)+1)
	limit := newConnLimit(a.cfg.MaxConns)
	lean := newLeanServer(a, a.newServer(a))
	for _, ln := range lns.consumer {
		a.logListening(ln)
		go func() {
			if err := lean.serve(limit.wrap(ln)); err != nil {
				errc <- fmt.Errorf("serving %s: %w", ln.Addr(), err)
			}
		}()
	}
	var admin *http.Server
	if lns.admin != nil {
		admin = a.startServer(lns.admin, a.AdminHandler(), errc)
	}
	notify("STATUS=waiting for the first upstream token")
	a.Start(func() {
		notify("READY=1\nSTATUS=ready")
	})
	stopWatchdog := a.watchdog()
	defer stopWatchdog()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		a.log.Error("listener failed", zap.Error(err))
	}
	a.log.Info("stopping")
	notify("STOPPING=1\nSTATUS=draining")
	return errors.Join(err, a.shutdown(lean, admin))
}

// newServer configures the http.Server of every listener: the bounds on
// what one connection may cost, and no built-in answer to "OPTIONS *", so
// that every request reaches h. For consumers it serves the connections
// the lean path hands over.
func (a *Agent) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            readHeaderTimeout,
		IdleTimeout:                  idleTimeout,
		MaxHeaderBytes:               maxHeaderBytes,
		DisableGeneralOptionsHandler: true,
		ConnContext:                  a.ConnContext,
		ErrorLog:                     zap.NewStdLog(a.log.Named("http")),
	}
}

func (a *Agent) logListening(ln net.Listener) {
	a.log.Info("listening", zap.String("network", ln.Addr().Network()),
		zap.String("address", ln.Addr().String()))
}

func (a *Agent) startServer(ln net.Listener, h http.Handler, errc chan<- error) *http.Server {
	srv := a.newServer(h)
	a.logListening(ln)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serving %s: %w", ln.Addr(), err)
		}
	}()
	return srv
}

// shutdown drains the consumer side and the admin server (nil: none)
// within the configured bound; connections still open after it are
// closed.
func (a *Agent) shutdown(lean *leanServer, admin *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	var adminErr error
	var wg sync.WaitGroup
	if admin != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if adminErr = admin.Shutdown(ctx); adminErr != nil {
				adminErr = errors.Join(adminErr, admin.Close())
			}
		}()
	}
	err := lean.shutdown(ctx)
	wg.Wait()
	a.log.Info("stopped")
	return errors.Join(err, adminErr)
}

// watchdog pings systemd at half the unit's watchdog interval, when the
// unit sets one; the returned func stops it.
func (a *Agent) watchdog() func() {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return func() {}
	}
	t := time.NewTicker(interval / 2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				notify("WATCHDOG=1")
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

// notify sends state to systemd; outside systemd it does nothing.
func notify(state string) {
	_, _ = daemon.SdNotify(false, state)
}
