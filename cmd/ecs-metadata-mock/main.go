// Command ecs-metadata-mock serves a simulated Alibaba Cloud ECS instance
// metadata service (package simulator) for tests, demos and benchmarks.
// It listens on loopback by default, prints one line ending in the URL it
// serves on, and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// shutdownTimeout bounds the wait for in-flight requests on stop; hung
// ones (Hang faults) are cut off after it.
const shutdownTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ecs-metadata-mock:", err)
		os.Exit(exitCode(err))
	}
}

// run serves until ctx is done. Bad flags are usageErrors; -h prints the
// usage and returns nil.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, os.LookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	opts, err := cfg.options()
	if err != nil {
		return err
	}
	ln, err := listen(cfg.Listen)
	if err != nil {
		return err
	}
	sim, err := simulator.Serve(ln, opts)
	if err != nil {
		_ = ln.Close()
		return err
	}
	fmt.Fprintf(stdout, "ecs-metadata-mock listening on %s\n", where(sim))
	<-ctx.Done()
	return shutdown(sim, stderr)
}

func (c config) options() (simulator.Options, error) {
	opts := simulator.Options{
		HardenedOnly: c.HardenedOnly,
		RateLimit:    c.RateLimit,
		Burst:        c.Burst,
	}
	if c.InstanceFile != "" {
		inst, err := simulator.LoadInstance(c.InstanceFile)
		if err != nil {
			return opts, err
		}
		opts.Instance = inst
	}
	return opts, nil
}

// listen opens a TCP host:port or a unix:PATH socket.
func listen(addr string) (net.Listener, error) {
	network, address := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

func where(sim *simulator.Server) string {
	if u := sim.URL(); u != "" {
		return u
	}
	return "unix:" + sim.Addr()
}

// shutdown lets in-flight requests finish for a bounded time.
func shutdown(sim *simulator.Server, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := sim.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "ecs-metadata-mock: requests still running after %v were cut off\n",
			shutdownTimeout)
		return nil
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
