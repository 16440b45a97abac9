package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"

	"github.com/coreos/go-systemd/v22/activation"
)

// adminSocketName is the FileDescriptorName of an inherited admin socket.
const adminSocketName = "admin"

// listeners are the sockets the agent serves on.
type listeners struct {
	consumer []net.Listener
	admin    net.Listener // nil: no admin surface
}

func (l *listeners) close() {
	for _, ln := range l.consumer {
		_ = ln.Close()
	}
	if l.admin != nil {
		_ = l.admin.Close()
	}
}

// openListeners takes the sockets systemd passed, then opens those cfg
// names. With inherited sockets and no Listen of its own, it opens no
// consumer socket itself; with neither, it opens the default one.
func openListeners(cfg Config) (*listeners, error) {
	inherited, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("inherited sockets: %w", err)
	}
	l := &listeners{}
	for name, lns := range inherited {
		if name == adminSocketName && len(lns) > 0 {
			l.admin, lns = lns[0], lns[1:]
		}
		l.consumer = append(l.consumer, lns...)
	}
	addrs := cfg.Listen
	if len(addrs) == 0 && len(l.consumer) == 0 {
		addrs = Defaults().Listen
	}
	for _, addr := range addrs {
		ln, err := listen(addr, cfg)
		if err != nil {
			l.close()
			return nil, err
		}
		l.consumer = append(l.consumer, ln)
	}
	if l.admin == nil && cfg.AdminListen != "" {
		if l.admin, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			l.close()
			return nil, fmt.Errorf("admin listener %s: %w", cfg.AdminListen, err)
		}
	}
	return l, nil
}

func listen(addr string, cfg Config) (net.Listener, error) {
	network, address, err := splitListen(addr)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		ln, err := net.Listen("tcp", address)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", addr, err)
		}
		return ln, nil
	}
	return listenUnix(address, os.FileMode(cfg.SocketMode), cfg.SocketGroup)
}

// listenUnix opens a Unix socket at path, replacing a stale socket file
// left by a crash but never another file or a socket in use.
func listenUnix(path string, mode os.FileMode, group string) (net.Listener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listener unix:%s: %w", path, err)
	}
	if path[0] == '@' { // abstract: no file to set a mode on
		return ln, nil
	}
	if err := setSocketAccess(path, mode, group); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	if path[0] == '@' {
		return nil
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listener unix:%s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("listener unix:%s: exists and is not a socket", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		_ = c.Close()
		return fmt.Errorf("listener unix:%s: another process is serving it", path)
	}
	return os.Remove(path)
}

func setSocketAccess(path string, mode os.FileMode, group string) error {
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("socket mode of %s: %w", path, err)
	}
	if group == "" {
		return nil
	}
	gid, err := lookupGroup(group)
	if err != nil {
		return err
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("socket group of %s: %w", path, err)
	}
	return nil
}

// lookupGroup accepts a group name or a numeric gid.
func lookupGroup(group string) (int, error) {
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, &ConfigError{"socket-group", group, "an existing group name or a numeric gid"}
	}
	return strconv.Atoi(g.Gid)
}
