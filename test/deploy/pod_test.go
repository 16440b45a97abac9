package deploy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Addresses of the Kubernetes case, all inside the test's namespaces:
// a veth between "node" and "pod" on TEST-NET-2, and the agent's node-local
// address standing in for 169.254.20.200.
const (
	podShimEnv    = shimPrefix + "POD"
	nodeVethAddr  = "198.51.100.1"
	podVethAddr   = "198.51.100.2"
	nodeAgentAddr = "192.0.2.10"
	agentLink     = "ecsmdagent0"
)

// TestPodRedirect plays the DaemonSet's part on a "node" namespace with a
// "pod" namespace behind a veth, as a CNI plugin would wire it: the
// intercept script's run command loads the prerouting redirect once the
// agent is ready, the pod is then answered by the agent, and the redirect
// goes away when the agent stops or the script is sent SIGTERM.
func TestPodRedirect(t *testing.T) {
	requireTool(t, "curl", "curl") // the script's run polls /readyz with it
	if inNetns(t) {
		podRedirectInNetns(t)
	}
}

// podRedirectInNetns is the body of TestPodRedirect, run as root inside the
// test's network namespace, which plays the node.
func podRedirectInNetns(t *testing.T) {
	requirePrivateNetns(t)
	env := []string{
		"ECS_METADATA_INTERCEPT_ADDR=" + standInAddr,
		"ECS_METADATA_INTERCEPT_TO=" + nodeAgentAddr + ":8998",
		"ECS_METADATA_INTERCEPT_ADMIN=" + agentAdmin,
		"ECS_METADATA_INTERCEPT_HOOKS=prerouting",
		"ECS_METADATA_INTERCEPT_INTERVAL=1",
	}
	env = append(env, nodeAgentAddress(t, bringUpStandIn(t))...)
	mock := startMock(t, net.JoinHostPort(standInAddr, "80"))
	agent := startAgentAs(t, agentUID, nodeAgentAddr+":8998")
	waitReady(t, agent)
	pod := startPod(t)

	sidecar := startSidecar(t, env)
	t.Run("pod is answered by the agent", func(t *testing.T) {
		mock.reset()
		pod.expectProbe(t)
		checkIntercepted(t, mock, false)
		if n := ruleCounter(t, nftTableText(t), "dnat to"); n == 0 {
			t.Error("the prerouting rule matched no packet")
		}
	})
	t.Run("SIGTERM removes the redirect", func(t *testing.T) {
		stopSidecar(t, sidecar)
		mock.reset()
		pod.expectProbe(t)
		if n := mock.consumerRequests(); n != 1 {
			t.Errorf("pod reached the service directly %d times, want 1: %v", n, mock.log())
		}
	})
	sidecar = startSidecar(t, env)
	t.Run("a new sidecar redirects again", func(t *testing.T) {
		mock.reset()
		pod.expectProbe(t) // from the agent's cache: the service sees nothing
		if n := mock.consumerRequests(); n != 0 {
			t.Errorf("pod reached the service directly %d times: %v", n, mock.log())
		}
	})
	t.Run("unready agent loses the redirect", func(t *testing.T) {
		if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "table removed", 20*time.Second, func() bool { return !tableLoaded(t) })
		mock.reset()
		pod.expectProbe(t)
		if n := mock.consumerRequests(); n != 1 {
			t.Errorf("pod reached the service directly %d times, want 1: %v", n, mock.log())
		}
	})
	stopSidecar(t, sidecar)
}

// nodeAgentAddress gives the node the agent's address: as the DaemonSet's
// init container does, with the script's link-up, where dummy links work;
// on lo otherwise. It returns the settings the script then needs.
func nodeAgentAddress(t *testing.T, dummy bool) []string {
	t.Helper()
	if !dummy {
		run(t, "ip", "addr", "add", nodeAgentAddr+"/32", "dev", "lo")
		return nil
	}
	env := []string{
		"ECS_METADATA_INTERCEPT_TO=" + nodeAgentAddr + ":8998",
		"ECS_METADATA_INTERCEPT_LINK=" + agentLink,
	}
	intercept(t, env, "link-up")
	return env[1:]
}

// startSidecar runs the script's run command, as the intercept container
// does, and waits until it has loaded the table.
func startSidecar(t *testing.T, env []string) *proc {
	t.Helper()
	cmd := exec.Command("sh", repoFile(t, interceptSh), "run")
	cmd.Env = append(cleanEnv(), env...)
	p := startProc(t, "ecs-metadata-intercept run", cmd)
	waitFor(t, "table loaded", 20*time.Second, func() bool { return tableLoaded(t) })
	return p
}

// stopSidecar sends SIGTERM, as the kubelet does, and checks that the
// script exits 0 having removed the table and its link.
func stopSidecar(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(15 * time.Second); err != nil {
		t.Fatalf("intercept run after SIGTERM: %v, want exit status 0", err)
	}
	if tableLoaded(t) {
		t.Error("table still loaded after SIGTERM")
	}
	if exec.Command("ip", "link", "show", agentLink).Run() == nil {
		t.Errorf("link %s still there after SIGTERM", agentLink)
	}
}

// tableLoaded reports whether the script's table is loaded.
func tableLoaded(t *testing.T) bool {
	t.Helper()
	return exec.Command("nft", "list", "table", "ip", nftTable).Run() == nil
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pod drives a copy of the test binary running podMain in a network
// namespace of its own, connected to the test's by a veth.
type pod struct {
	in    io.WriteCloser
	lines chan string
}

// startPod starts the pod, wires the veth and configures both ends.
func startPod(t *testing.T) *pod {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(cleanEnv(), podShimEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{in: in, lines: make(chan string, 16)}
	proc := startProc(t, "pod", cmd)
	go p.read(out)
	t.Cleanup(func() {
		_ = in.Close()
		_ = proc.wait(10 * time.Second)
	})
	run(t, "ip", "link", "add", "vnode", "type", "veth", "peer", "name", "vpod",
		"netns", strconv.Itoa(cmd.Process.Pid))
	run(t, "ip", "addr", "add", nodeVethAddr+"/24", "dev", "vnode")
	run(t, "ip", "link", "set", "vnode", "up")
	if got := p.ask(t, "setup"); got != "ok" {
		t.Fatalf("pod setup: %s", got)
	}
	return p
}

// read passes the pod's answers on, one line each.
func (p *pod) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		p.lines <- sc.Text()
	}
	close(p.lines)
}

// ask sends the pod a command and returns its one-line answer.
func (p *pod) ask(t *testing.T, command string) string {
	t.Helper()
	if _, err := fmt.Fprintln(p.in, command); err != nil {
		t.Fatalf("pod %s: %v", command, err)
	}
	select {
	case line, ok := <-p.lines:
		if !ok {
			t.Fatalf("pod %s: pod exited", command)
		}
		return line
	case <-time.After(30 * time.Second):
		t.Fatalf("pod %s: no answer within 30s", command)
	}
	return ""
}

// expectProbe has the pod make the consumer's request, which must be
// answered with the probe value, by the agent or the service.
func (p *pod) expectProbe(t *testing.T) {
	t.Helper()
	want := "200 " + strconv.Quote(probeValue)
	if got := p.ask(t, "get"); got != want {
		t.Fatalf("pod GET: %s, want %s", got, want)
	}
}

// podMain is the pod: it answers commands on stdin, one line each, until
// stdin closes. "setup" configures its end of the veth; "get" makes the
// consumer's request and prints its status and quoted body.
func podMain() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "setup":
			fmt.Println(setupPod())
		case "get":
			code, body, err := probeGet()
			if err != nil {
				fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
				continue
			}
			fmt.Println(code, strconv.Quote(body))
		default:
			fmt.Println("unknown command")
		}
	}
	os.Exit(0)
}

// setupPod brings up the pod's links and routes everything via the node.
func setupPod() string {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", podVethAddr + "/24", "dev", "vpod"},
		{"link", "set", "vpod", "up"},
		{"route", "add", "default", "via", nodeVethAddr},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Sprintf("ip %s: %v: %s", strings.Join(args, " "), err,
				strings.TrimSpace(string(out)))
		}
	}
	return "ok"
}
