package agent

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateNamesTheBadValue(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		flag string
	}{
		{"upstream not a URL", func(c *Config) { c.Upstream = "100.100.100.200" }, "upstream"},
		{"upstream https", func(c *Config) { c.Upstream = "https://127.0.0.1" }, "upstream"},
		{"upstream with path", func(c *Config) { c.Upstream = "http://127.0.0.1/x" }, "upstream"},
		{"listen relative", func(c *Config) { c.Listen = []string{"unix:rel.sock"} }, "listen"},
		{"listen no port", func(c *Config) { c.Listen = []string{"127.0.0.1"} }, "listen"},
		{"listen bad port", func(c *Config) { c.Listen = []string{"127.0.0.1:99999"} }, "listen"},
		{"admin unix", func(c *Config) { c.AdminListen = "unix:/x" }, "admin-listen"},
		{"socket mode", func(c *Config) { c.SocketMode = 0o1777 }, "socket-mode"},
		{"token ttl short", func(c *Config) { c.TokenTTL = 500 * time.Millisecond }, "token-ttl"},
		{"token ttl long", func(c *Config) { c.TokenTTL = 7 * time.Hour }, "token-ttl"},
		{"token ttl fraction", func(c *Config) { c.TokenTTL = 1500 * time.Millisecond },
			"token-ttl"},
		{"cache entries", func(c *Config) { c.CacheEntries = 0 }, "cache-entries"},
		{"cache bytes", func(c *Config) { c.CacheBytes = 10 }, "cache-bytes"},
		{"upstream timeout", func(c *Config) { c.UpstreamTimeout = 0 }, "upstream-timeout"},
		{"shutdown timeout", func(c *Config) { c.ShutdownTimeout = -1 }, "shutdown-timeout"},
		{"socket group", func(c *Config) { c.SocketGroup = "no-such-group-here" }, "socket-group"},
		{"upstream rate", func(c *Config) { c.UpstreamRate = 0 }, "upstream-rate"},
		{"warmup path", func(c *Config) { c.Warmup = []string{"/latest/../x"} }, "warmup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.edit(&c)
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Flag != tt.flag {
				t.Fatalf("Validate() = %v, want a ConfigError for --%s", err, tt.flag)
			}
			if !strings.Contains(err.Error(), "--"+tt.flag) || ce.Allowed == "" {
				t.Errorf("message %q does not name the flag and what is allowed", err)
			}
		})
	}
}

func TestDefaultsAreValid(t *testing.T) {
	c := Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Listen = []string{"127.0.0.1:0", "[::1]:8080", "unix:/run/x.sock", "unix:@abstract"}
	c.Upstream = "http://127.0.0.1:8080/"
	if err := c.Validate(); err != nil || c.Upstream != "http://127.0.0.1:8080" {
		t.Fatalf("Validate() = %v, upstream %q", err, c.Upstream)
	}
}
