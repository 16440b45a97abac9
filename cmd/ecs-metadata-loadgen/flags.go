package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/cmd/ecs-metadata-loadgen/internal/load"
)

// settings is the parsed command line.
type settings struct {
	load  load.Config
	herd  int // herd size; 0: a closed-loop run
	json  bool
	label string
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// pidFlag collects a repeatable process id flag.
type pidFlag []int

func (p *pidFlag) String() string { return fmt.Sprint(*p) }
func (p *pidFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a process id, got %q", v)
	}
	*p = append(*p, n)
	return nil
}

func parseSettings(args []string, stderr io.Writer) (settings, error) {
	var s settings
	var target string
	var paths, headers listFlag
	var pids pidFlag
	fs := flag.NewFlagSet("ecs-metadata-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&target, "target", "", "http://HOST:PORT (loopback only) or unix:/PATH")
	fs.Var(&paths, "path", "path to GET, repeatable, cycled; {seq} is replaced by a "+
		"sequence number (default /latest/meta-data/instance-id)")
	fs.Var(&headers, "H", "request header 'Name: value', repeatable")
	fs.IntVar(&s.load.Keys, "keys", 0, "{seq} cycles from 0 to keys-1; 0: no bound")
	fs.IntVar(&s.load.Connections, "c", 64, "keep-alive connections")
	fs.DurationVar(&s.load.Duration, "d", 10*time.Second, "measured duration; 0: until -n")
	fs.Int64Var(&s.load.Requests, "n", 0, "measured requests; 0: until -d")
	fs.DurationVar(&s.load.Warmup, "warmup", 0, "unmeasured load before the measured part")
	fs.DurationVar(&s.load.Timeout, "timeout", 5*time.Second, "bound on each request")
	fs.Var(&pids, "pid", "process id to report CPU time and peak VmRSS of, repeatable")
	fs.IntVar(&s.herd, "herd", 0, "send this many concurrent requests for the first "+
		"path at once, each on its own connection, and report the slowest")
	fs.BoolVar(&s.json, "json", false, "print the result as one JSON object")
	fs.StringVar(&s.label, "label", "", "name of the run, echoed in the output")
	if err := fs.Parse(args); err != nil {
		return settings{}, err
	}
	return s.finish(fs, target, paths, headers, pids)
}

func (s settings) finish(fs *flag.FlagSet, target string, paths, headers []string,
	pids []int) (settings, error) {
	if fs.NArg() > 0 {
		return settings{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if target == "" {
		return settings{}, fmt.Errorf("-target is required")
	}
	t, err := load.ParseTarget(target)
	if err != nil {
		return settings{}, err
	}
	if len(paths) == 0 {
		paths = []string{"/latest/meta-data/instance-id"}
	}
	if s.herd < 0 {
		return settings{}, fmt.Errorf("-herd %d: want 0 or more", s.herd)
	}
	s.load.Target, s.load.Paths, s.load.Headers, s.load.Watch = t, paths, headers, pids
	return s, nil
}

// drive runs the herd or the closed loop the settings ask for.
func (s settings) drive(ctx context.Context) (load.Result, error) {
	if s.herd > 0 {
		return load.Herd(ctx, load.HerdConfig{Target: s.load.Target, Path: s.load.Paths[0],
			Headers: s.load.Headers, Concurrency: s.herd, Timeout: s.load.Timeout})
	}
	return load.Run(ctx, s.load)
}
