// Command ecs-metadata-agent serves the ECS instance metadata service to the
// processes of one node from a cache, holding one upstream token. See the
// project README for its flags, metrics and deployment.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err and maps it to the process status: 0 after -h, 2
// for a bad command line or configuration, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) && ue.help:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "ecs-metadata-agent:", err)
		return 2
	}
	fmt.Fprintln(stderr, "ecs-metadata-agent:", err)
	return 1
}
