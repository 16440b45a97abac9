package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	unitDir     = "deploy/systemd"
	serviceUnit = "ecs-metadata-agent.service"
	socketUnit  = "ecs-metadata-agent.socket"
	dropInDir   = serviceUnit + ".d"
	interceptSh = "deploy/intercept/ecs-metadata-intercept"
	// maxExposure is the highest "systemd-analyze security" score accepted
	// for the service (0 = fully locked down, 10 = no sandbox at all).
	maxExposure = 2.0
)

// unitFile is a parsed systemd unit: section -> key -> values in order.
type unitFile map[string]map[string][]string

// parseUnit reads the subset of the unit file syntax the project uses:
// sections, comments, and key=value lines, keys repeatable.
func parseUnit(t *testing.T, text string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case strings.Contains(line, "=") && section != "":
			k, v, _ := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		default:
			t.Fatalf("line %d: cannot parse %q", i+1, line)
		}
	}
	return u
}

// last is the effective value of a key that is set once: its last setting.
func (u unitFile) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// readUnit parses a unit file of deploy/systemd.
func readUnit(t *testing.T, name string) unitFile {
	t.Helper()
	return parseUnit(t, readRepoFile(t, unitDir+"/"+name))
}

// TestServiceHardening pins the settings the service must keep: the notify
// protocol, restart policy, and every sandbox option the design relies on.
func TestServiceHardening(t *testing.T) {
	u := readUnit(t, serviceUnit)
	for _, tc := range []struct{ key, want string }{
		{"Type", "notify"}, {"NotifyAccess", "main"}, {"Restart", "on-failure"},
		{"WatchdogSec", "30s"}, {"User", "ecs-metadata"},
		{"EnvironmentFile", "-/etc/default/ecs-metadata-agent"},
		{"RuntimeDirectory", "ecs-metadata-agent"}, {"RuntimeDirectoryPreserve", "yes"},
		{"UMask", "0077"}, {"NoNewPrivileges", "yes"}, {"ProtectSystem", "strict"},
		{"ProtectHome", "yes"}, {"PrivateTmp", "yes"}, {"PrivateDevices", "yes"},
		{"CapabilityBoundingSet", ""}, {"AmbientCapabilities", ""},
		{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
		{"SystemCallArchitectures", "native"}, {"SystemCallErrorNumber", "EPERM"},
		{"MemoryDenyWriteExecute", "yes"}, {"LockPersonality", "yes"},
		{"RestrictNamespaces", "yes"}, {"RestrictRealtime", "yes"},
		{"RestrictSUIDSGID", "yes"}, {"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"}, {"ProtectKernelLogs", "yes"},
		{"ProtectControlGroups", "yes"}, {"ProtectClock", "yes"},
		{"ProtectHostname", "yes"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			got, ok := u.last("Service", tc.key)
			if !ok || got != tc.want {
				t.Errorf("[Service] %s = %q (set: %v), want %q", tc.key, got, ok, tc.want)
			}
		})
	}
	filters := u["Service"]["SystemCallFilter"]
	for _, want := range []string{"@system-service", "~@privileged @resources"} {
		if !slices.Contains(filters, want) {
			t.Errorf("SystemCallFilter settings %q lack %q", filters, want)
		}
	}
}

// TestInterceptDropIn pins when the drop-in runs the script: install once
// the agent is ready, remove before SIGTERM and after any exit, each as
// root ("+") and without failing the agent ("-").
func TestInterceptDropIn(t *testing.T) {
	u := parseUnit(t, readRepoFile(t, unitDir+"/"+dropInDir+"/intercept.conf"))
	for _, tc := range []struct{ key, verb string }{
		{"ExecStartPost", "install"}, {"ExecStop", "remove"}, {"ExecStopPost", "remove"},
	} {
		got, _ := u.last("Service", tc.key)
		want := "-+/usr/local/sbin/ecs-metadata-intercept " + tc.verb
		if got != want {
			t.Errorf("[Service] %s = %q, want %q", tc.key, got, want)
		}
	}
}

// TestUnitsAgree checks the names and addresses that several files must
// spell the same way: a mismatch breaks access or interception silently.
func TestUnitsAgree(t *testing.T) {
	svc, sock := readUnit(t, serviceUnit), readUnit(t, socketUnit)
	user, _ := svc.last("Service", "User")
	group, _ := sock.last("Socket", "SocketGroup")
	script := readRepoFile(t, interceptSh)
	for _, tc := range []struct{ what, got, want string }{
		{"socket SocketGroup", group, "ecs-metadata"},
		{"socket SocketMode", first(sock["Socket"]["SocketMode"]), "0660"},
		{"service Group", first(svc["Service"]["Group"]), group},
		{"sysusers user", sysusersName(t), user},
		{"intercept default exempt user", scriptDefault(t, script, "EXEMPT_USER"), user},
		{"intercept default target", scriptDefault(t, script, "TO"),
			tcpListen(sock["Socket"]["ListenStream"])},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.what, tc.got, tc.want)
		}
	}
	listens := sock["Socket"]["ListenStream"]
	if !slices.Contains(listens, "/run/ecs-metadata-agent/agent.sock") {
		t.Errorf("socket ListenStream %q lacks the agent's default socket path", listens)
	}
}

// first is the first of vs, or "" if none.
func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// tcpListen is the first ListenStream that is an address, not a path.
func tcpListen(listens []string) string {
	for _, l := range listens {
		if !strings.HasPrefix(l, "/") {
			return l
		}
	}
	return ""
}

// sysusersName is the user the sysusers.d file creates.
func sysusersName(t *testing.T) string {
	t.Helper()
	text := readRepoFile(t, unitDir+"/ecs-metadata-agent.sysusers")
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "u" {
			return f[1]
		}
	}
	t.Fatal("sysusers file creates no user")
	return ""
}

// scriptDefault is the default the intercept script gives a setting.
func scriptDefault(t *testing.T, script, name string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\w+=\$\{ECS_METADATA_INTERCEPT_` + name + `:-([^}]*)\}$`)
	m := re.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("intercept script has no default for ECS_METADATA_INTERCEPT_%s", name)
	}
	return m[1]
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on copies of the
// units whose programs point at real executables, with and without the
// interception drop-in, and accepts no diagnostics at all.
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool := requireTool(t, "systemd-analyze", "systemd")
	for _, tc := range []struct {
		name   string
		dropIn bool
	}{{"plain", false}, {"with intercept drop-in", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := stageUnits(t, tc.dropIn)
			cmd := exec.Command(tool, "verify",
				filepath.Join(dir, socketUnit), filepath.Join(dir, serviceUnit))
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		})
	}
}

// TestSystemdSecurityExposure holds the service to an exposure score, so
// that a dropped sandbox option shows up even if it is not pinned above.
func TestSystemdSecurityExposure(t *testing.T) {
	tool := requireTool(t, "systemd-analyze", "systemd")
	dir := stageUnits(t, true)
	out, err := exec.Command(tool, "security", "--offline=yes", "--no-pager",
		filepath.Join(dir, serviceUnit)).CombinedOutput()
	if err != nil && strings.Contains(string(out), "--offline") {
		t.Skipf("skipping: this systemd-analyze has no --offline (systemd < 250): %s", out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in systemd-analyze security output (%v):\n%s", err, out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil || score > maxExposure {
		t.Errorf("exposure level %s, want at most %.1f\n%s", m[1], maxExposure, out)
	}
}

// stageUnits copies the units to a temporary directory and points their
// commands at executables that exist here.
func stageUnits(t *testing.T, dropIn bool) string {
	t.Helper()
	dir := t.TempDir()
	agent := "/bin/true"
	script := repoFile(t, interceptSh)
	copyEdited(t, socketUnit, dir, nil)
	copyEdited(t, serviceUnit, dir, strings.NewReplacer(
		"/usr/local/bin/ecs-metadata-agent", agent))
	if dropIn {
		if err := os.Mkdir(filepath.Join(dir, dropInDir), 0o755); err != nil {
			t.Fatal(err)
		}
		copyEdited(t, dropInDir+"/intercept.conf", dir, strings.NewReplacer(
			"/usr/local/sbin/ecs-metadata-intercept", script))
	}
	return dir
}

// copyEdited copies a file of deploy/systemd into dir, through r if set.
func copyEdited(t *testing.T, name, dir string, r *strings.Replacer) {
	t.Helper()
	text := readRepoFile(t, unitDir+"/"+name)
	if r != nil {
		text = r.Replace(text)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
