// Package deploy_test checks the deployment files under deploy/ and the
// Dockerfile: systemd units (systemd-analyze, socket activation of the built
// agent), the nftables interception script (inside a network namespace the
// test creates), and the Kubernetes manifests (strict decoding, kustomize
// golden output).
//
// Tests that need root, a Debian tool or the built agent skip with a
// message naming what is missing. Set ECS_DEPLOY_REQUIRE_AGENT=1 to turn a
// failed agent build into a failure instead of a skip.
package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestMain lets the test binary double as the small programs the tests
// need in a child process (see shim.go) before running the tests.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(shimExecEnv) != "":
		shimExec()
	case os.Getenv(podShimEnv) != "":
		podMain()
	}
	code := m.Run()
	if agentBuild.dir != "" {
		_ = os.RemoveAll(agentBuild.dir)
	}
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

// repoRoot is the main module's directory: two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("repo root: no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// repoFile is the path of a file given relative to the repository root.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

// readRepoFile reads a file given relative to the repository root.
func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

// requireTool skips the test unless the named program is on PATH, and
// returns its path.
func requireTool(t *testing.T, name, debianPkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("skipping: %s not found on PATH (Debian package %s)", name, debianPkg)
	}
	return path
}

// requireRoot skips the test unless it runs as root.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipping: needs root to %s", why)
	}
}

var agentBuild struct {
	once sync.Once
	dir  string
	path string
	err  string
}

// agentBinary builds cmd/ecs-metadata-agent once per test binary and
// returns its path, skipping the test when it does not build (yet).
func agentBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(agentPathEnv); p != "" {
		return p
	}
	root := repoRoot(t)
	agentBuild.once.Do(func() { buildAgent(root) })
	if agentBuild.err == "" {
		return agentBuild.path
	}
	if os.Getenv("ECS_DEPLOY_REQUIRE_AGENT") == "1" {
		t.Fatalf("agent does not build: %s", agentBuild.err)
	}
	t.Skipf("skipping: agent does not build yet: %s", agentBuild.err)
	return ""
}

// buildAgent compiles the agent into a directory that any user may read, so
// that tests can run it under an unprivileged uid.
func buildAgent(root string) {
	if _, err := exec.LookPath("go"); err != nil {
		agentBuild.err = "go not found on PATH"
		return
	}
	dir, err := os.MkdirTemp("", "ecs-deploy-agent-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		agentBuild.err = err.Error()
		return
	}
	agentBuild.dir = dir
	agentBuild.path = filepath.Join(dir, "ecs-metadata-agent")
	cmd := exec.Command("go", "build", "-o", agentBuild.path, "./cmd/ecs-metadata-agent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		agentBuild.err = strings.TrimSpace(string(out))
	}
}

// cleanEnv is the test's environment without settings that would change
// what a child process under test does.
func cleanEnv() []string {
	return withoutPrefixes(os.Environ(),
		"ECS_METADATA_", "ECS_DEPLOY_", "LISTEN_", "NOTIFY_SOCKET=", "WATCHDOG_")
}

// withoutPrefixes returns env less the entries starting with any prefix.
func withoutPrefixes(env []string, prefixes ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, p := range prefixes {
			keep = keep && !strings.HasPrefix(kv, p)
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
