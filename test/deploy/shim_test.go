package deploy_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Environment variables by which a test asks its own binary to act as a
// helper. Everything with shimPrefix is removed before the agent sees it.
const (
	shimPrefix   = "ECS_DEPLOY_SHIM_"
	shimExecEnv  = shimPrefix + "EXEC"
	shimNamesEnv = shimPrefix + "FDNAMES"
	agentPathEnv = "ECS_DEPLOY_AGENT_PATH"
)

// shimExec replaces this process with the program named by shimExecEnv,
// passing it the inherited file descriptors 3.. as systemd's socket
// activation does.
//
// Why a shim: LISTEN_PID must be the pid of the process that reads
// LISTEN_FDS, and a parent learns its child's pid only after the fork, too
// late to put it in the child's environment. systemd sets it between fork
// and exec; exec keeps the pid, so the shim sets LISTEN_PID to its own pid
// and then execs the agent. Unlike systemd-socket-activate, this needs no
// extra tool and binds nothing itself: the test hands over listeners it
// already holds, so there is no window for port races.
func shimExec() {
	prog := os.Getenv(shimExecEnv)
	names := os.Getenv(shimNamesEnv)
	pid := strconv.Itoa(os.Getpid())
	env := withoutPrefixes(os.Environ(), shimPrefix, "LISTEN_", "WATCHDOG_PID=")
	env = append(env,
		"LISTEN_PID="+pid,
		"LISTEN_FDS="+strconv.Itoa(len(strings.Split(names, ":"))),
		"LISTEN_FDNAMES="+names,
	)
	if hasEnv(env, "WATCHDOG_USEC=") {
		env = append(env, "WATCHDOG_PID="+pid)
	}
	argv := append([]string{prog}, os.Args[1:]...)
	err := syscall.Exec(prog, argv, env)
	fmt.Fprintf(os.Stderr, "shim: exec %s: %v\n", prog, err)
	os.Exit(127)
}

// hasEnv reports whether env has an entry starting with prefix.
func hasEnv(env []string, prefix string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, prefix) {
			return true
		}
	}
	return false
}
