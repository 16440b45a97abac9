package deploy_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runScript runs the intercept script with the given settings and
// arguments and returns its stdout, stderr and exit code.
func runScript(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	sh := requireTool(t, "sh", "dash")
	cmd := exec.Command(sh, append([]string{repoFile(t, interceptSh)}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("run intercept script: %v", err)
	}
	return stdout.String(), stderr.String(), 0
}

// TestInterceptRuleset checks the nft script that install would load, for
// the VM (output hook, agent exempt by uid) and Kubernetes (prerouting).
func TestInterceptRuleset(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		want    []string
		notWant []string
	}{{
		name: "vm defaults but the user",
		args: []string{"--exempt-user", "0"},
		want: []string{
			"table ip ecs_metadata_agent\ndelete table ip ecs_metadata_agent\n",
			"type nat hook output priority -100; policy accept;\n" +
				"\t\tmeta skuid 0 counter return\n" +
				"\t\tip daddr 100.100.100.200 tcp dport 80 counter dnat to 127.0.0.1:8998\n",
		},
		notWant: []string{"prerouting"},
	}, {
		name: "kubernetes from the environment",
		env: []string{"ECS_METADATA_INTERCEPT_HOOKS=prerouting",
			"ECS_METADATA_INTERCEPT_TO=169.254.20.200:8998",
			"ECS_METADATA_INTERCEPT_EXEMPT_USER=no-such-user-needed"},
		want: []string{"type nat hook prerouting priority -100; policy accept;\n" +
			"\t\tip daddr 100.100.100.200 tcp dport 80 counter dnat to 169.254.20.200:8998\n"},
		notWant: []string{"skuid", "hook output"},
	}, {
		name: "arguments override the environment",
		env:  []string{"ECS_METADATA_INTERCEPT_ADDR=10.0.0.1"},
		args: []string{"--addr", "192.0.2.200", "--port", "8080", "--table", "t1",
			"--hooks", "output,prerouting", "--exempt-user", "65534", "--to", "127.0.0.2:9"},
		want: []string{"table ip t1 {\n", "meta skuid 65534 counter return",
			"ip daddr 192.0.2.200 tcp dport 8080 counter dnat to 127.0.0.2:9\n\t}\n" +
				"\tchain prerouting"},
		notWant: []string{"10.0.0.1", "ecs_metadata_agent"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runScript(t, tc.env, append(tc.args, "print")...)
			if code != 0 {
				t.Fatalf("print: exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("ruleset lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("ruleset has %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestInterceptRejects checks that bad settings stop the script before
// anything is loaded, with a message naming the bad value.
func TestInterceptRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"short address", []string{"--addr", "100.100.200"}, 2, "'100.100.200'"},
		{"octet too big", []string{"--addr", "100.100.100.256"}, 2, "'100.100.100.256'"},
		{"octal-looking octet", []string{"--addr", "100.100.100.020"}, 2, "'100.100.100.020'"},
		{"port zero", []string{"--port", "0"}, 2, "'0'"},
		{"port with leading zero", []string{"--port", "080"}, 2, "'080'"},
		{"interval zero", []string{"--interval", "0"}, 2, "'0'"},
		{"target without port", []string{"--to", "127.0.0.1"}, 2, "'127.0.0.1'"},
		{"target port too big", []string{"--to", "127.0.0.1:65536"}, 2, "'127.0.0.1:65536'"},
		{"unknown hook", []string{"--hooks", "output,input"}, 2, "'input'"},
		{"table with a space", []string{"--table", "a b"}, 2, "'a b'"},
		{"link name too long", []string{"--link", "sixteen-chars-ab"}, 2, "'sixteen-chars-ab'"},
		{"unknown option", []string{"--verbose", "x"}, 2, "usage"},
		{"missing user", []string{"--exempt-user", "no-such-user-xyz"}, 1, "'no-such-user-xyz'"},
		{"two commands", []string{"install"}, 2, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runScript(t, nil, append(tc.args, "print")...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantMsg) {
				t.Errorf("exit %d, stderr %q; want exit %d naming %s",
					code, errOut, tc.wantCode, tc.wantMsg)
			}
			if out != "" {
				t.Errorf("printed a ruleset despite the error:\n%s", out)
			}
		})
	}
}

// TestInterceptShellcheck lints the script, which runs as root.
func TestInterceptShellcheck(t *testing.T) {
	tool := requireTool(t, "shellcheck", "shellcheck")
	out, err := exec.Command(tool, "--shell=sh", repoFile(t, interceptSh)).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// TestInterceptScriptIsExecutable checks the mode the units and the image
// rely on.
func TestInterceptScriptIsExecutable(t *testing.T) {
	fi, err := os.Stat(repoFile(t, interceptSh))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 != 0o111 {
		t.Errorf("mode %v, want executable by all", fi.Mode())
	}
}
