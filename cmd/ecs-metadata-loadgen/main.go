// Command ecs-metadata-loadgen measures an HTTP server on this machine:
// requests per second and latency percentiles of N keep-alive connections
// over TCP or a Unix socket, or the slowest answer of a herd of concurrent
// requests for one key. It aims only at loopback and Unix sockets. Run it
// with -h for its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "ecs-metadata-loadgen:", err)
		os.Exit(1)
	}
}

// run parses args, drives the target and writes the result to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parseSettings(args, stderr)
	if err != nil {
		return err
	}
	res, err := s.drive(ctx)
	if err != nil {
		return err
	}
	if s.json {
		return writeJSON(stdout, s.label, res)
	}
	return writeText(stdout, s.label, res)
}
