// Package e2e runs the built agent against the simulator on loopback and
// talks to it with curl over its Unix socket and TCP.
package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/simulator"
	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

func startAgent(t *testing.T, extra ...string) *testbin.Agent {
	t.Helper()
	return testbin.StartAgent(t, simulator.Options{}, extra...)
}

func curl(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipping: curl is not installed (Debian package curl)")
	}
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "5",
		"--noproxy", "", "-w", "\n%{http_code}"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	return string(out)
}

func TestCurlOverSocketTCPAndProxyForm(t *testing.T) {
	a := startAgent(t)
	const path = "/latest/meta-data/instance-id"
	want, _ := a.Sim.Value(path)
	cases := []struct {
		name string
		args []string
	}{
		{"unix socket", []string{"--unix-socket", a.Sock, "http://localhost" + path}},
		{"tcp", []string{"http://" + a.TCP + path}},
		{"proxy form", []string{"-x", "http://" + a.TCP, "http://100.100.100.200" + path}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := curl(t, c.args...); got != string(want)+"\n200" {
				t.Errorf("curl answered %q, want %q then 200", got, want)
			}
		})
	}
	got := curl(t, "-x", "http://"+a.TCP, "http://example.com/latest/meta-data/instance-id")
	if !strings.HasSuffix(got, "\n403") {
		t.Errorf("proxy-form request for another host: %q, want 403", got)
	}
	if st := a.Sim.Stats(); st.TokenPUTs != 1 || st.Forwarded != 0 {
		t.Errorf("upstream saw %d token PUTs and %d forwarded requests, want 1 and 0",
			st.TokenPUTs, st.Forwarded)
	}
}

func TestAdminSurfaceIsNotOnConsumerListeners(t *testing.T) {
	a := startAgent(t)
	for url, want := range map[string]int{
		"http://" + a.Admin + "/readyz":  200,
		"http://" + a.Admin + "/metrics": 200,
		"http://" + a.TCP + "/metrics":   404,
		"http://" + a.TCP + "/readyz":    404,
	} {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", url, res.StatusCode, want)
		}
	}
}

func TestSIGTERMDrainsAndRemovesTheSocket(t *testing.T) {
	a := startAgent(t)
	if _, err := os.Stat(a.Sock); err != nil {
		t.Fatalf("socket missing while running: %v", err)
	}
	if err := a.Proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Proc.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent still running 15 s after SIGTERM")
	}
	if _, err := os.Stat(a.Sock); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind after stop (stat: %v)", a.Sock, err)
	}
}

func TestBadFlagExits2(t *testing.T) {
	bin := testbin.Build(t, "ecs-metadata-agent")
	out, err := exec.Command(bin, "--token-ttl", "9h", "--upstream", "http://127.0.0.1:1").
		CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--token-ttl") {
		t.Errorf("exit %v, output %q: want status 2 naming --token-ttl", err, out)
	}
}
