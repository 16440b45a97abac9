package deploy_test

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// agentFlags are the agent's flags, each settable as ECS_METADATA_AGENT_<NAME>.
var agentFlags = []string{
	"upstream", "listen", "socket-mode", "socket-group", "admin-listen",
	"token-ttl", "cache-entries", "simulate", "log-level", "log-format",
}

const (
	agentEnvPrefix     = "ECS_METADATA_AGENT_"
	interceptEnvPrefix = "ECS_METADATA_INTERCEPT_"
)

// flagEnv is the environment variable that sets a flag.
func flagEnv(flag string) string {
	return agentEnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// knownAgentEnv reports whether name sets one of the agent's flags.
func knownAgentEnv(name string) bool {
	for _, f := range agentFlags {
		if flagEnv(f) == name {
			return true
		}
	}
	return false
}

// TestEnvFileKeys checks that every setting the sample environment file
// names, commented out or not, is one the agent or the intercept script
// reads: a misspelt name would be ignored without a word.
func TestEnvFileKeys(t *testing.T) {
	text := readRepoFile(t, unitDir+"/ecs-metadata-agent.env")
	script := readRepoFile(t, interceptSh)
	re := regexp.MustCompile(`(?m)^#?([A-Z][A-Z0-9_]*)=`)
	matches := re.FindAllStringSubmatch(text, -1)
	if len(matches) < len(agentFlags)-1 {
		t.Fatalf("env file names %d settings, want most of the %d flags", len(matches),
			len(agentFlags))
	}
	for _, m := range matches {
		name := m[1]
		switch {
		case strings.HasPrefix(name, interceptEnvPrefix):
			if !strings.Contains(script, "${"+name+":-") {
				t.Errorf("env file sets %s, which the intercept script does not read", name)
			}
		case !knownAgentEnv(name):
			t.Errorf("env file sets %s, which is no agent flag", name)
		}
	}
}

// TestAgentKnowsFlags compares the flag table with the built agent's
// --help, so that the table above cannot drift from the agent.
func TestAgentKnowsFlags(t *testing.T) {
	agent := agentBinary(t)
	cmd := exec.Command(agent, "--help")
	cmd.Env = cleanEnv()
	out, _ := cmd.CombinedOutput() // --help may exit 0 or 2
	for _, f := range agentFlags {
		if !regexp.MustCompile(`-` + regexp.QuoteMeta(f) + `\b`).Match(out) {
			t.Errorf("agent --help does not mention --%s:\n%s", f, out)
		}
	}
}

// TestConfigMapKeys checks that the ConfigMap sets only agent flags.
func TestConfigMapKeys(t *testing.T) {
	cm := configMap(t)
	if len(cm.Data) == 0 {
		t.Fatal("ConfigMap has no data")
	}
	for k := range cm.Data {
		if !knownAgentEnv(k) {
			t.Errorf("ConfigMap key %s is no agent flag; known: %v", k, agentFlags)
		}
	}
	for _, k := range []string{"ECS_METADATA_AGENT_LISTEN", "ECS_METADATA_AGENT_ADMIN_LISTEN"} {
		if _, ok := cm.Data[k]; !ok {
			t.Errorf("ConfigMap lacks %s, which the intercept container reads", k)
		}
	}
	if l := cm.Data["ECS_METADATA_AGENT_LISTEN"]; strings.Contains(l, ",") ||
		strings.HasPrefix(l, "unix:") {
		t.Errorf("ECS_METADATA_AGENT_LISTEN = %q, want one HOST:PORT (the redirect target)", l)
	}
}
