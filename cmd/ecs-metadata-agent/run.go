package main

import (
	"context"
	"io"
	"runtime/debug"
	"strconv"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/agent"
)

// run parses the command line and serves until ctx is done.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool),
	stderr io.Writer) error {
	s, err := parseSettings(args, lookupEnv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(s.logLevel, s.logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	upstream := s.agent.Upstream
	if s.agent.Simulate {
		upstream = "the built-in simulator"
	}
	log.Info("starting", zap.String("upstream", upstream),
		zap.String("gogc", tuneGC(lookupEnv)),
		zap.Strings("listen", s.agent.Listen),
		zap.String("admin_listen", s.agent.AdminListen), zap.Bool("simulate", s.agent.Simulate))
	return agent.Run(ctx, s.agent, log)
}

// defaultGOGC is the garbage collector's target when GOGC is not set.
// A cache hit allocates nothing, so collections follow misses and token
// requests only: a tighter target than Go's 100 costs little CPU and
// keeps the resident memory near what the cache holds.
const defaultGOGC = 50

// tuneGC applies defaultGOGC unless the environment sets GOGC (which the
// runtime has read already, ignoring a bad value), and returns the
// setting in force: a percentage, or "off".
func tuneGC(lookupEnv func(string) (string, bool)) string {
	if _, ok := lookupEnv("GOGC"); !ok {
		debug.SetGCPercent(defaultGOGC)
	}
	cur := debug.SetGCPercent(100) // reading it means setting it; put it back
	debug.SetGCPercent(cur)
	if cur < 0 {
		return "off"
	}
	return strconv.Itoa(cur)
}

func newLogger(level, format string) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.DisableStacktrace = true
	return cfg.Build()
}
