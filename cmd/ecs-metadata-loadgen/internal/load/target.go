package load

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Target is where requests go: a loopback TCP address or a Unix socket.
type Target struct {
	Network string // "tcp" or "unix"
	Address string // host:port or socket path
	Host    string // the Host header sent
}

// String gives the target as ParseTarget reads it.
func (t Target) String() string {
	if t.Network == "unix" {
		return "unix:" + t.Address
	}
	return "http://" + t.Address
}

// ParseTarget reads "http://HOST:PORT" with a loopback IP or localhost, or
// "unix:/PATH". Any other host is refused: the generator never leaves the
// machine.
func ParseTarget(s string) (Target, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return Target{}, fmt.Errorf("target %q: want unix:/PATH", s)
		}
		return Target{Network: "unix", Address: path, Host: "localhost"}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return Target{}, fmt.Errorf("target %q: want http://HOST:PORT or unix:/PATH", s)
	}
	if !isLoopback(u.Hostname()) {
		return Target{}, fmt.Errorf("target %q: only loopback hosts are allowed", s)
	}
	return Target{Network: "tcp", Address: u.Host, Host: u.Host}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// dial opens one connection to t within timeout.
func (t Target) dial(ctx context.Context, timeout time.Duration) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, t.Network, t.Address)
	if err != nil {
		return nil, err
	}
	return newConn(c), nil
}
