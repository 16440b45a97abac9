package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/agent"
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "ECS_METADATA_AGENT_"

// settings is everything the command line sets: the agent's Config and the
// logger's.
type settings struct {
	agent     agent.Config
	logLevel  string
	logFormat string
}

// usageError is a bad command line or configuration value: exit status 2.
type usageError struct {
	err  error
	help bool // -h: usage was printed, nothing more to say
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// listFlag collects a repeatable flag whose values may also be given
// comma-separated. The first use replaces the default list.
type listFlag struct {
	values  *[]string
	touched bool
}

func (l *listFlag) String() string {
	if l == nil || l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.touched {
		*l.values, l.touched = nil, true
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.values = append(*l.values, part)
		}
	}
	return nil
}

// ttlFlag collects repeatable PREFIX=DURATION rules.
type ttlFlag struct{ rules *[]agent.TTLRule }

func (f ttlFlag) String() string {
	if f.rules == nil {
		return ""
	}
	parts := make([]string, len(*f.rules))
	for i, r := range *f.rules {
		parts[i] = r.Prefix + "=" + r.TTL.String()
	}
	return strings.Join(parts, ",")
}

func (f ttlFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		r, err := agent.ParseTTLRule(part)
		if err != nil {
			return err
		}
		*f.rules = append(*f.rules, r)
	}
	return nil
}

// octalFlag is a file mode written in octal, such as 0660.
type octalFlag struct{ mode *uint32 }

func (o octalFlag) String() string {
	if o.mode == nil {
		return ""
	}
	return fmt.Sprintf("%04o", *o.mode)
}

func (o octalFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 {
		return errors.New("an octal file mode from 0 to 0777")
	}
	*o.mode = uint32(n)
	return nil
}

func newFlagSet(s *settings, out io.Writer) *flag.FlagSet {
	d := agent.Defaults()
	c := &s.agent
	fs := flag.NewFlagSet("ecs-metadata-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Upstream, "upstream", d.Upstream, "base URL of the metadata service")
	fs.Var(&listFlag{values: &c.Listen}, "listen",
		"consumer listener, unix:PATH or HOST:PORT; repeatable (default "+d.Listen[0]+")")
	c.SocketMode = d.SocketMode
	fs.Var(octalFlag{&c.SocketMode}, "socket-mode", "mode of the Unix sockets opened (octal)")
	fs.StringVar(&c.SocketGroup, "socket-group", "", "group (name or gid) owning the Unix sockets")
	fs.StringVar(&c.AdminListen, "admin-listen", d.AdminListen,
		"HOST:PORT for /healthz, /readyz and /metrics; empty for none")
	fs.DurationVar(&c.TokenTTL, "token-ttl", d.TokenTTL, "lifetime of the upstream token, 1s to 6h")
	fs.IntVar(&c.CacheEntries, "cache-entries", d.CacheEntries,
		"cache bound in entries, 1 to 10000000")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", d.CacheBytes,
		"cache bound in bytes of answers and keys, 65536 to 16GiB")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", d.UpstreamTimeout,
		"deadline of one upstream call, retries included, 10ms to 1m")
	fs.BoolVar(&c.RequireToken, "require-token", false,
		"answer 401 to consumers that present no token (hardened-only mode)")
	fs.IntVar(&c.MaxConns, "max-conns", d.MaxConns,
		"consumer connections open at once, over all listeners")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", d.ShutdownTimeout,
		"how long draining may take on SIGTERM, 0 to 10m")
	fs.BoolVar(&c.Simulate, "simulate", false,
		"serve from the built-in simulator instead of an upstream")
	fs.StringVar(&c.PolicyFile, "policy", "",
		"access policy file: allow|deny SUBJECT PATH-PREFIX per line (see README)")
	addFreshnessFlags(fs, c, d)
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&s.logFormat, "log-format", "json", "json or console")
	return fs
}

// parseSettings reads flags, then the environment for every flag the
// command line left unset, then validates the result.
func parseSettings(args []string, lookupEnv func(string) (string, bool),
	out io.Writer) (settings, error) {
	var s settings
	fs := newFlagSet(&s, out)
	fs.Usage = func() {} // a bad value gets one line, not the whole list
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.PrintDefaults()
			return s, &usageError{err: err, help: true}
		}
		return s, &usageError{err: explain(fs, err)}
	}
	if fs.NArg() > 0 {
		return s, &usageError{err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if err := applyEnv(fs, lookupEnv); err != nil {
		return s, &usageError{err: err}
	}
	if err := s.validate(); err != nil {
		return s, &usageError{err: err}
	}
	return s, nil
}

func applyEnv(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if err != nil || set[f.Name] || !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("invalid value %q for %s (--%s): %v", v, name, f.Name, e)
		}
	})
	return err
}

// explain adds to a flag package error what the flag takes, from its help.
func explain(fs *flag.FlagSet, err error) error {
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(err.Error(), " -"+f.Name+":") {
			err = fmt.Errorf("%w (--%s: %s)", err, f.Name, f.Usage)
		}
	})
	return err
}

// envName is the environment variable of a flag: --token-ttl is
// ECS_METADATA_AGENT_TOKEN_TTL.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (s *settings) validate() error {
	switch s.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return &agent.ConfigError{Flag: "log-level", Value: s.logLevel,
			Allowed: "debug, info, warn or error"}
	}
	if s.logFormat != "json" && s.logFormat != "console" {
		return &agent.ConfigError{Flag: "log-format", Value: s.logFormat,
			Allowed: "json or console"}
	}
	return s.agent.Validate()
}

func addFreshnessFlags(fs *flag.FlagSet, c *agent.Config, d agent.Config) {
	fs.Var(ttlFlag{&c.TTLRules}, "ttl",
		"PREFIX=DURATION fresh lifetime for meta-data items under PREFIX; repeatable")
	fs.DurationVar(&c.NotFoundTTL, "not-found-ttl", d.NotFoundTTL, "how long a 404 is cached, 0 to 1h")
	fs.DurationVar(&c.StaleFor, "stale-for", d.StaleFor,
		"how long past fresh a value is served while upstream fails, 0 to 24h")
	fs.DurationVar(&c.CredentialsRefreshBefore, "credentials-refresh-before",
		d.CredentialsRefreshBefore,
		"refresh credentials this long before their Expiration, 1m to 3h")
	c.Warmup = d.Warmup
	fs.Var(&listFlag{values: &c.Warmup}, "warmup",
		"path fetched before ready, {roles} for each role; repeatable; \"\" for none")
	fs.DurationVar(&c.WarmupTimeout, "warmup-timeout", d.WarmupTimeout,
		"ready after this even if warm-up is not done, 0 to 10m")
	fs.Float64Var(&c.UpstreamRate, "upstream-rate", d.UpstreamRate,
		"the agent's upstream requests per second, above 0 up to 10000")
	fs.IntVar(&c.UpstreamBurst, "upstream-burst", d.UpstreamBurst,
		"burst of --upstream-rate, 1 to 10000")
	fs.Float64Var(&c.ConsumerRate, "consumer-rate", d.ConsumerRate,
		"uncached and token requests per second per consumer (uid or address); 0 for no limit")
	fs.IntVar(&c.ConsumerBurst, "consumer-burst", d.ConsumerBurst,
		"burst of --consumer-rate, 1 to 100000")
}
