package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// defaultSocket is where the agent listens when given no socket at all.
const defaultSocket = "/run/ecs-metadata-agent/agent.sock"

// passedSocket is a listener the test opens and hands to the agent the way
// systemd would, under a file descriptor name.
type passedSocket struct {
	name    string
	network string
	ln      net.Listener
	file    *os.File
}

// TestSocketActivation runs the built agent as ecs-metadata-agent.socket
// and Type=notify would: with inherited listeners (two for consumers, one
// named "admin") and a NOTIFY_SOCKET, and checks the notify protocol and
// that every inherited socket serves.
func TestSocketActivation(t *testing.T) {
	agent := agentBinary(t)
	dir := t.TempDir()
	socks := []*passedSocket{
		listenPassed(t, "consumer", "unix", filepath.Join(dir, "agent.sock")),
		listenPassed(t, "consumer-tcp", "tcp", "127.0.0.1:0"),
		listenPassed(t, "admin", "tcp", "127.0.0.1:0"),
	}
	notify := listenNotify(t, filepath.Join(dir, "notify.sock"))
	_, errDefault := os.Lstat(defaultSocket)
	p := startActivated(t, agent, socks, notify.path)

	notify.expect(t, "READY=1", 60*time.Second, p.done)
	notify.expect(t, "WATCHDOG=1", 5*time.Second, p.done)
	checkServes(t, socks)
	if _, err := os.Lstat(defaultSocket); err == nil && errDefault != nil {
		t.Errorf("agent opened %s besides the sockets it was given", defaultSocket)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("send SIGTERM: %v", err)
	}
	notify.expect(t, "STOPPING=1", 15*time.Second, nil)
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit status 0", err)
	}
}

// checkServes asks each consumer socket for the instance id, and the admin
// socket for /readyz, all of which must answer 200.
func checkServes(t *testing.T, socks []*passedSocket) {
	t.Helper()
	for _, s := range socks {
		path := "/latest/meta-data/instance-id"
		if s.name == "admin" {
			path = "/readyz"
		}
		t.Run(s.name, func(t *testing.T) {
			code, body := httpGet(t, s, path)
			if code != http.StatusOK || body == "" {
				t.Errorf("GET %s on %s socket: %d %q, want 200 and a body",
					path, s.name, code, body)
			}
		})
	}
}

// listenPassed opens a listener to pass to the agent. The test's own copy
// is closed once the agent has started; a Unix socket's file stays.
func listenPassed(t *testing.T, name, network, addr string) *passedSocket {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	var f *os.File
	switch l := ln.(type) {
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		f, err = l.File()
	case *net.TCPListener:
		f, err = l.File()
	}
	if err != nil {
		t.Fatalf("listener file for %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = ln.Close()
		_ = f.Close()
	})
	return &passedSocket{name: name, network: network, ln: ln, file: f}
}

// startActivated starts the agent through the shim with the sockets as
// file descriptors 3...
func startActivated(t *testing.T, agent string, socks []*passedSocket,
	notifyPath string) *proc {
	t.Helper()
	var names []string
	cmd := exec.Command(os.Args[0], "--simulate", "--log-level", "debug")
	for _, s := range socks {
		names = append(names, s.name)
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.file)
	}
	cmd.Env = append(cleanEnv(),
		shimExecEnv+"="+agent,
		shimNamesEnv+"="+strings.Join(names, ":"),
		"NOTIFY_SOCKET="+notifyPath,
		"WATCHDOG_USEC=2000000",
	)
	p := startProc(t, "agent", cmd)
	for _, s := range socks {
		_ = s.file.Close()
		_ = s.ln.Close()
	}
	return p
}

// httpGet sends GET path to the agent through a passed socket.
func httpGet(t *testing.T, s *passedSocket, path string) (int, string) {
	t.Helper()
	addr := s.ln.Addr().String()
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, s.network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("http://localhost" + path) // a DNS name would be refused over TCP
	if err != nil {
		t.Fatalf("GET %s on %s socket: %v", path, s.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s from %s socket: %v", path, s.name, err)
	}
	return resp.StatusCode, string(body)
}

// notifyLog receives sd_notify datagrams on a socket the test owns.
type notifyLog struct {
	path  string
	lines chan string
}

// listenNotify listens for sd_notify messages at path until the test ends.
func listenNotify(t *testing.T, path string) *notifyLog {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen for notifications: %v", err)
	}
	n := &notifyLog{path: path, lines: make(chan string, 4096)}
	done := make(chan struct{})
	go n.read(conn, done)
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return n
}

// read splits each datagram into its newline-separated assignments.
func (n *notifyLog) read(conn *net.UnixConn, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 64<<10)
	for {
		k, err := conn.Read(buf)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(buf[:k]), "\n") {
			select {
			case n.lines <- line:
			default: // a test that stopped reading loses nothing it needs
			}
		}
	}
}

// expect waits for the assignment want, failing the test if the process
// exits (exited, when not nil, is closed) or the time runs out first.
func (n *notifyLog) expect(t *testing.T, want string, d time.Duration,
	exited <-chan struct{}) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case line := <-n.lines:
			if line == want {
				return
			}
			seen = append(seen, line)
		case <-exited:
			t.Fatalf("agent exited before sending %s; it sent %q", want, seen)
		case <-timer.C:
			t.Fatalf("no %s within %v; the agent sent %q", want, d, seen)
		}
	}
}

// proc is a started child process whose exit the test can wait for.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // set before done is closed
}

// startProc starts cmd with its output collected (stdout only if the
// caller has not taken it). When the test ends the process is killed if
// still running, and its output shown if the test failed.
func startProc(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.out
	}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// wait waits up to d for the process to exit and returns its error.
func (p *proc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return errors.New("still running")
	}
}

// stop kills the process if it still runs and shows its output when the
// test failed.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if t.Failed() {
		t.Logf("%s output:\n%s", p.name, p.out)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
