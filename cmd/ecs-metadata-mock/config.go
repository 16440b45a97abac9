package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
)

// defaultListen is loopback only; 10200 recalls 100.100.100.200.
const defaultListen = "127.0.0.1:10200"

// envPrefix starts the environment variable of each flag: --rate-limit is
// also ECS_METADATA_MOCK_RATE_LIMIT. Flags override the environment.
const envPrefix = "ECS_METADATA_MOCK_"

// config is everything the command is told.
type config struct {
	Listen       string
	InstanceFile string
	HardenedOnly bool
	RateLimit    float64
	Burst        int
}

// usageError is a bad flag or environment value; the command exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// parseConfig reads the environment through lookup, then args.
func parseConfig(args []string, lookup func(string) (string, bool),
	stderr io.Writer) (config, error) {
	cfg := config{Listen: defaultListen}
	fs := newFlagSet(&cfg, stderr)
	if err := applyEnv(fs, lookup); err != nil {
		return cfg, usageError{err}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, usageError{fmt.Errorf("unexpected argument %q: this command "+
			"takes flags only", fs.Arg(0))}
	}
	return cfg, nil
}

func newFlagSet(cfg *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ecs-metadata-mock", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main
	fs.Usage = func() { usage(fs, stderr) }
	fs.Func("listen", "`address` to serve on: host:port, or unix:/path/to.sock "+
		"(default "+defaultListen+")", func(v string) error {
		if err := checkListen(v); err != nil {
			return err
		}
		cfg.Listen = v
		return nil
	})
	fs.StringVar(&cfg.InstanceFile, "instance", "",
		"JSON `file` with the instance to serve (default: the built-in sample)")
	fs.Var((*boolValue)(&cfg.HardenedOnly), "hardened-only",
		"answer 401 to reads without a token")
	fs.Var((*rateValue)(&cfg.RateLimit), "rate-limit",
		"`rps` above which 429 is answered (0: unlimited)")
	fs.Var((*burstValue)(&cfg.Burst), "burst",
		"token bucket `size` of the rate limit (0: max(1, rate-limit))")
	return fs
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: ecs-metadata-mock [flags]\n\nServes a simulated ECS "+
		"metadata service. Each flag can also be set as %sNAME (e.g. %sRATE_LIMIT).\n\n",
		envPrefix, envPrefix)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// applyEnv sets each flag whose variable is set in the environment.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := lookup(name)
		if !ok || err != nil {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("invalid value %q for $%s: %w", v, name, serr)
		}
	})
	return err
}

func checkListen(v string) error {
	if p, ok := strings.CutPrefix(v, "unix:"); ok && p != "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		return errors.New("want host:port such as 127.0.0.1:10200 (port 0-65535), " +
			"or unix:/path/to.sock")
	}
	return nil
}

// boolValue is a bool flag with a message saying what is allowed.
type boolValue bool

func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }

func (b *boolValue) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("want true or false")
	}
	*b = boolValue(on)
	return nil
}

type rateValue float64

func (r *rateValue) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }

func (r *rateValue) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 0) || math.IsInf(f, 0) {
		return errors.New("want requests per second, a number 0 or more (0: unlimited)")
	}
	*r = rateValue(f)
	return nil
}

type burstValue int

func (b *burstValue) String() string { return strconv.Itoa(int(*b)) }

func (b *burstValue) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return errors.New("want an integer 0 or more (0: max(1, rate-limit))")
	}
	*b = burstValue(n)
	return nil
}
