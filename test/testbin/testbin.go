// Package testbin builds the project's commands once per test process and
// runs them with their logs parsed, for end-to-end tests. Its functions
// are safe for concurrent use.
package testbin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const modulePath = "github.com/ecs-metadata-agent/ecs-metadata-agent/cmd/"

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// Build returns the path of the named command (e.g. "ecs-metadata-agent"),
// building it on first use. It skips the test when the go tool is absent.
// The package's TestMain must run its tests through Main, which removes
// what Build made.
func Build(t testing.TB, name string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: the go tool is not on PATH, so the binaries cannot be built")
	}
	if dir == "" {
		ns := pidNamespace()
		sweepStale(os.TempDir(), ns)
		if dir, err = os.MkdirTemp("", binDirPrefix+ns+"-"+strconv.Itoa(os.Getpid())+"-"); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	out, err := exec.Command(goTool, "build", "-o", p, modulePath+name).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	built[name] = p
	return p
}

// binDirPrefix starts the name of a directory of built binaries; the
// building process's PID namespace and PID follow, so that a later run
// can tell the directories of processes that died before Main removed
// them (a panic, a -timeout, an interrupt).
const binDirPrefix = "ecs-metadata-agent-bin-"

// pidNamespace names this process's PID namespace by its inode, or is "0"
// when /proc does not say.
func pidNamespace() string {
	link, err := os.Readlink("/proc/self/ns/pid") // "pid:[4026531836]"
	if err != nil {
		return "0"
	}
	inode := strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]")
	if _, err := strconv.ParseUint(inode, 10, 64); err != nil {
		return "0"
	}
	return inode
}

// sweepStale removes the binary directories in tmp of test processes in
// the PID namespace ns that are gone. A directory of another namespace
// (whose PIDs mean nothing here, though tmp may be shared), one whose name
// holds no PID (as those of versions before it did), or one of a live
// process is left alone.
func sweepStale(tmp, ns string) {
	if ns == "0" {
		return
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), binDirPrefix+ns+"-")
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, found := strings.Cut(rest, "-")
		if !found {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
}

// processAlive reports whether a process with the given PID exists (one
// of another user's counts: EPERM).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Main runs the tests of a package that uses Build and then removes the
// binaries built for them; call it from TestMain, as os.Exit(Main(m)) or
// before checks of one's own.
func Main(m *testing.M) int {
	code := m.Run()
	if err := removeBuilt(); err != nil {
		fmt.Fprintln(os.Stderr, "testbin: removing the built binaries:", err)
	}
	return code
}

// removeBuilt removes the directory of the built binaries; a later Build
// builds again.
func removeBuilt() error {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		return nil
	}
	err := os.RemoveAll(dir)
	dir, built = "", map[string]string{}
	return err
}

// Process is a running command whose JSON log lines are collected.
type Process struct {
	Cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	done  chan struct{}
}

// Start runs the command with args, collecting its stderr log lines, and
// kills it when the test ends if it is still running.
func Start(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(path, args...), done: make(chan struct{})}
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.collect(stderr)
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
		_ = p.Cmd.Wait()
	})
	return p
}

func (p *Process) collect(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			m = map[string]any{"msg": "(not json) " + sc.Text()}
		}
		p.mu.Lock()
		p.lines = append(p.lines, m)
		p.mu.Unlock()
	}
}

// Lines returns the log lines collected so far.
func (p *Process) Lines() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.lines...)
}

// Log returns every collected line as text, for failure messages and for
// asserting that a secret never appears.
func (p *Process) Log() string {
	var b strings.Builder
	for _, l := range p.Lines() {
		j, _ := json.Marshal(l)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitLog waits up to 10 s for log lines with message msg and returns them
// once at least n have arrived; it fails the test otherwise, at once if
// the process exits first.
func (p *Process) WaitLog(t testing.TB, msg string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		exited := p.exited()
		if found := p.find(msg); len(found) >= n {
			return found
		}
		if exited {
			t.Fatalf("process exited before %d log lines %q; log:\n%s", n, msg, p.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %d log lines %q within 10s; log:\n%s", n, msg, p.Log())
	return nil
}

func (p *Process) find(msg string) []map[string]any {
	var found []map[string]any
	for _, l := range p.Lines() {
		if l["msg"] == msg {
			found = append(found, l)
		}
	}
	return found
}

// exited reports whether the process has closed its stderr, which it does
// when it exits.
func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its error.
func (p *Process) Wait() error {
	<-p.done
	return p.Cmd.Wait()
}
