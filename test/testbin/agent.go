package testbin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
)

// Agent is the built agent running in front of an in-process simulator,
// everything on loopback.
type Agent struct {
	Proc  *Process
	Sim   *simulator.Server
	Sock  string // path of the consumer Unix socket
	TCP   string // HOST:PORT of the consumer TCP listener
	Admin string // HOST:PORT of the admin listener
}

// StartAgent starts a simulator with opts on 127.0.0.1 and the built agent
// in front of it, listening on a Unix socket, on 127.0.0.1 and with its
// admin surface on 127.0.0.1; extra flags are appended. It returns once the
// agent logs that it is ready, and stops both when the test ends.
func StartAgent(t testing.TB, opts simulator.Options, extra ...string) *Agent {
	t.Helper()
	sim, err := simulator.Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return StartAgentFor(t, sim, extra...)
}

// StartAgentFor is StartAgent in front of a simulator the caller started,
// on any listener.
func StartAgentFor(t testing.TB, sim *simulator.Server, extra ...string) *Agent {
	t.Helper()
	bin := Build(t, "ecs-metadata-agent")
	sock := filepath.Join(shortTempDir(t), "agent.sock")
	args := append([]string{"--upstream", "http://" + sim.Addr(), "--listen", "unix:" + sock,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, extra...)
	a := &Agent{Proc: Start(t, bin, args...), Sim: sim, Sock: sock}
	for _, l := range a.Proc.WaitLog(t, "listening", 3) {
		addr, _ := l["address"].(string)
		switch {
		case l["network"] == "unix":
		case a.TCP == "":
			a.TCP = addr // consumer listeners are logged before the admin one
		default:
			a.Admin = addr
		}
	}
	a.Proc.WaitLog(t, "ready", 1)
	return a
}

// shortTempDir is a temporary directory with a short path: a Unix socket
// path must fit in 108 bytes, which t.TempDir under a long test name may
// not.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ema-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
