package agent

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config holds every setting of the agent. Zero fields mean the defaults
// from Defaults; Validate reports the first bad value by its flag name.
type Config struct {
	Upstream        string        // base URL of the metadata service
	Listen          []string      // "unix:PATH" or "HOST:PORT", repeatable
	SocketMode      uint32        // file mode of the Unix sockets the agent opens
	SocketGroup     string        // group name or gid owning those sockets, "" = unchanged
	AdminListen     string        // HOST:PORT for /healthz, /readyz, /metrics; "" = none
	TokenTTL        time.Duration // lifetime of the upstream token
	CacheEntries    int           // LRU bound in entries
	CacheBytes      int64         // LRU bound in bytes of bodies
	UpstreamTimeout time.Duration // deadline of one upstream call
	RequireToken    bool          // consumers must present a token from a local PUT
	ShutdownTimeout time.Duration // how long draining may take
	MaxConns        int           // consumer connections open at once, over all listeners
	Simulate        bool          // serve from the built-in simulator

	// Freshness and protection (see README, "Fresh and calm").
	TTLRules                 []TTLRule     // per-prefix lifetimes over DefaultTTLRules
	NotFoundTTL              time.Duration // how long a 404 is kept; 0: never
	StaleFor                 time.Duration // how long past fresh a value is served on error
	CredentialsRefreshBefore time.Duration // refresh credentials this long before Expiration
	Warmup                   []string      // paths fetched before ready; "" entries ignored
	WarmupTimeout            time.Duration // ready after this even if warm-up is not done
	UpstreamRate             float64       // upstream requests per second, token bucket
	UpstreamBurst            int           // bucket size
	ConsumerRate             float64       // upstream-bound requests per second per consumer
	ConsumerBurst            int           // bucket size per consumer

	PolicyFile string  // access rules, see ParsePolicy; "" allows everyone everything
	policy     *Policy // loaded from PolicyFile by Validate
}

// DefaultWarmup is what the agent fetches before it reports ready. The
// token "{roles}" stands for each role the role listing names.
var DefaultWarmup = []string{
	"/latest/meta-data/ram/security-credentials/",
	"/latest/meta-data/ram/security-credentials/{roles}",
	"/latest/meta-data/instance-id",
	"/latest/meta-data/region-id",
	"/latest/meta-data/zone-id",
	"/latest/meta-data/owner-account-id",
	"/latest/dynamic/instance-identity/document",
}

// MetadataHost is the address consumers believe they talk to. Absolute-form
// requests are accepted for this host only.
const MetadataHost = "100.100.100.200"

// Defaults returns the configuration the agent runs with when nothing is set.
func Defaults() Config {
	return Config{
		Upstream:        "http://" + MetadataHost,
		Listen:          []string{"unix:/run/ecs-metadata-agent/agent.sock"},
		SocketMode:      0o660,
		AdminListen:     "127.0.0.1:8999",
		TokenTTL:        6 * time.Hour,
		CacheEntries:    10000,
		CacheBytes:      64 << 20,
		UpstreamTimeout: 2 * time.Second,
		ShutdownTimeout: 10 * time.Second,
		MaxConns:        4096,

		NotFoundTTL:              notFoundTTL,
		StaleFor:                 staleFor,
		CredentialsRefreshBefore: 20 * time.Minute,
		Warmup:                   append([]string(nil), DefaultWarmup...),
		WarmupTimeout:            10 * time.Second,
		UpstreamRate:             50,
		UpstreamBurst:            100,
		ConsumerRate:             20,
		ConsumerBurst:            100,
	}
}

// ConfigError is a configuration value that is not allowed.
type ConfigError struct {
	Flag, Value, Allowed string
}

// Error names the flag, the value and what is allowed.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid value %q for --%s: %s", e.Value, e.Flag, e.Allowed)
}

// Validate checks every field and returns a *ConfigError for the first bad
// one.
func (c *Config) Validate() error {
	checks := []func() error{
		c.validateUpstream, c.validateListen, c.validateDurations, c.validateSizes,
		c.validateFreshness, c.validateRates, c.loadPolicy,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateUpstream() error {
	u, err := url.Parse(c.Upstream)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return &ConfigError{"upstream", c.Upstream,
			"an http:// URL with a host and no path, e.g. http://127.0.0.1:8080"}
	}
	c.Upstream = strings.TrimSuffix(c.Upstream, "/")
	return nil
}

func (c *Config) validateListen() error {
	for _, l := range c.Listen {
		if _, _, err := splitListen(l); err != nil {
			return &ConfigError{"listen", l, "unix:/ABSOLUTE/PATH or HOST:PORT"}
		}
	}
	if c.SocketGroup != "" {
		if _, err := lookupGroup(c.SocketGroup); err != nil {
			return err
		}
	}
	if c.SocketMode > 0o777 {
		return &ConfigError{"socket-mode", fmt.Sprintf("%o", c.SocketMode),
			"an octal file mode from 0 to 0777"}
	}
	if c.AdminListen != "" {
		if n, _, err := splitListen(c.AdminListen); err != nil || n != "tcp" {
			return &ConfigError{"admin-listen", c.AdminListen, "HOST:PORT, or empty for none"}
		}
	}
	return nil
}

func (c *Config) validateDurations() error {
	switch {
	case c.TokenTTL < time.Second || c.TokenTTL > 6*time.Hour || c.TokenTTL%time.Second != 0:
		return &ConfigError{"token-ttl", c.TokenTTL.String(), "whole seconds from 1s to 6h"}
	case c.UpstreamTimeout < 10*time.Millisecond || c.UpstreamTimeout > time.Minute:
		return &ConfigError{"upstream-timeout", c.UpstreamTimeout.String(), "10ms to 1m"}
	case c.ShutdownTimeout < 0 || c.ShutdownTimeout > 10*time.Minute:
		return &ConfigError{"shutdown-timeout", c.ShutdownTimeout.String(), "0 to 10m"}
	}
	return nil
}

func (c *Config) validateSizes() error {
	if c.CacheEntries < 1 || c.CacheEntries > 10_000_000 {
		return &ConfigError{"cache-entries", fmt.Sprint(c.CacheEntries), "1 to 10000000"}
	}
	if c.CacheBytes < 1<<16 || c.CacheBytes > 16<<30 {
		return &ConfigError{"cache-bytes", fmt.Sprint(c.CacheBytes), "64KiB (65536) to 16GiB"}
	}
	if c.MaxConns < 1 || c.MaxConns > 1_000_000 {
		return &ConfigError{"max-conns", fmt.Sprint(c.MaxConns), "1 to 1000000"}
	}
	return nil
}

func (c *Config) validateFreshness() error {
	switch {
	case c.NotFoundTTL < 0 || c.NotFoundTTL > time.Hour:
		return &ConfigError{"not-found-ttl", c.NotFoundTTL.String(), "0 to 1h"}
	case c.StaleFor < 0 || c.StaleFor > 24*time.Hour:
		return &ConfigError{"stale-for", c.StaleFor.String(), "0 to 24h"}
	case c.CredentialsRefreshBefore < time.Minute || c.CredentialsRefreshBefore > 3*time.Hour:
		return &ConfigError{"credentials-refresh-before", c.CredentialsRefreshBefore.String(),
			"1m to 3h"}
	case c.WarmupTimeout < 0 || c.WarmupTimeout > 10*time.Minute:
		return &ConfigError{"warmup-timeout", c.WarmupTimeout.String(), "0 to 10m"}
	}
	for _, p := range c.Warmup {
		if p != "" && checkPath(strings.ReplaceAll(p, rolesToken, "r"), "") != nil {
			return &ConfigError{"warmup", p, "metadata paths such as /latest/meta-data/instance-id"}
		}
	}
	return nil
}

func (c *Config) validateRates() error {
	switch {
	case c.UpstreamRate <= 0 || c.UpstreamRate > 10000:
		return &ConfigError{"upstream-rate", fmt.Sprint(c.UpstreamRate), "above 0, up to 10000"}
	case c.UpstreamBurst < 1 || c.UpstreamBurst > 10000:
		return &ConfigError{"upstream-burst", fmt.Sprint(c.UpstreamBurst), "1 to 10000"}
	case c.ConsumerRate < 0 || c.ConsumerRate > 100000:
		return &ConfigError{"consumer-rate", fmt.Sprint(c.ConsumerRate), "0 (off) to 100000"}
	case c.ConsumerBurst < 1 || c.ConsumerBurst > 100000:
		return &ConfigError{"consumer-burst", fmt.Sprint(c.ConsumerBurst), "1 to 100000"}
	}
	return nil
}

func (c *Config) loadPolicy() error {
	if c.PolicyFile == "" {
		c.policy = nil
		return nil
	}
	p, err := LoadPolicy(c.PolicyFile)
	if err != nil {
		return &ConfigError{"policy", c.PolicyFile, err.Error()}
	}
	c.policy = p
	return nil
}

// splitListen turns "unix:PATH" or "HOST:PORT" into a network and address.
func splitListen(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
			return "", "", fmt.Errorf("unix socket path %q is not absolute", path)
		}
		return "unix", path, nil
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", "", err
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

func splitHostPort(s string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return host, port, nil
}

// The warm-up placeholder for each role, and the listing it is read from.
const (
	rolesToken   = "{roles}"
	rolesListing = "/latest/meta-data/ram/security-credentials/"
)
