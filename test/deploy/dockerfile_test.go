package deploy_test

import (
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
)

// stage is one FROM ... AS name section of the Dockerfile.
type stage struct {
	name, base string
	lines      []string // instructions after FROM, continuations joined
}

// parseDockerfile splits the Dockerfile into stages. It reads only what
// the checks below need: FROM lines and the instructions under them.
func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	text := strings.ReplaceAll(readRepoFile(t, "Dockerfile"), "\\\n", " ")
	var stages []stage
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(line, "#"):
		case strings.EqualFold(f[0], "FROM"):
			s := stage{base: f[1]}
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				s.name = f[3]
			}
			stages = append(stages, s)
		case len(stages) > 0:
			last := &stages[len(stages)-1]
			last.lines = append(last.lines, line)
		}
	}
	if len(stages) < 3 {
		t.Fatalf("Dockerfile has %d stages, want build, intercept and agent", len(stages))
	}
	return stages
}

// findStage is the stage called name.
func findStage(t *testing.T, stages []stage, name string) stage {
	t.Helper()
	for _, s := range stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile has no stage %q", name)
	return stage{}
}

// instr returns the arguments of every instruction op in the stage.
func (s stage) instr(op string) []string {
	var out []string
	for _, l := range s.lines {
		if f := strings.Fields(l); strings.EqualFold(f[0], op) {
			out = append(out, strings.TrimSpace(l[len(f[0]):]))
		}
	}
	return out
}

// TestDockerfile checks the build flags, that the default (last) stage is
// the agent on a static base as a non-root user matching the DaemonSet,
// and that the intercept image carries nft and the script on PATH.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	build := findStage(t, stages, "build")
	agent := stages[len(stages)-1]
	intercept := findStage(t, stages, "intercept")
	buildRun := strings.Join(build.instr("RUN"), "\n")
	agentUser := strings.Join(agent.instr("USER"), "")
	for _, tc := range []struct {
		what string
		ok   bool
	}{
		{"build stage is golang", strings.HasPrefix(build.base, "golang:")},
		{"CGO_ENABLED=0", strings.Contains(buildRun, "CGO_ENABLED=0")},
		{"-trimpath", strings.Contains(buildRun, "-trimpath")},
		{"builds ./cmd/ecs-metadata-agent", strings.Contains(buildRun, "./cmd/ecs-metadata-agent")},
		{"default stage is named agent", agent.name == "agent"},
		{"agent base is static", strings.Contains(agent.base, "distroless/static") ||
			agent.base == "scratch"},
		{"agent user matches DaemonSet runAsUser", agentUser == podUser(t)},
		{"intercept installs nftables",
			strings.Contains(strings.Join(intercept.instr("RUN"), " "), "nftables")},
		{"intercept script on PATH", copiesOntoPath(intercept, interceptSh)},
	} {
		if !tc.ok {
			t.Errorf("Dockerfile: want %s", tc.what)
		}
	}
}

// podUser is the uid:gid the DaemonSet runs the agent as.
func podUser(t *testing.T) string {
	t.Helper()
	sc := container(t, "agent").SecurityContext
	if sc == nil || sc.RunAsUser == nil || sc.RunAsGroup == nil {
		t.Fatal("agent container sets no runAsUser and runAsGroup")
	}
	return strconv.FormatInt(*sc.RunAsUser, 10) + ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
}

// copiesOntoPath reports whether the stage copies src into a directory of
// the default PATH, where the readiness probe's bare command finds it.
func copiesOntoPath(s stage, src string) bool {
	for _, c := range s.instr("COPY") {
		f := strings.Fields(c)
		if len(f) == 2 && f[0] == src {
			switch path.Dir(f[1]) {
			case "/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin":
				return true
			}
		}
	}
	return false
}

// TestDockerfileSources checks that every file copied from the build
// context exists and is not excluded by .dockerignore.
func TestDockerfileSources(t *testing.T) {
	ignored := strings.Fields(readRepoFile(t, ".dockerignore"))
	for _, s := range parseDockerfile(t) {
		for _, c := range s.instr("COPY") {
			f := strings.Fields(c)
			if strings.HasPrefix(f[0], "--from=") {
				continue
			}
			for _, src := range f[:len(f)-1] {
				if src == "." {
					continue
				}
				if _, err := os.Stat(repoFile(t, src)); err != nil {
					t.Errorf("stage %s copies %s: %v", s.name, src, err)
				}
				top := strings.Split(src, "/")[0]
				for _, ig := range ignored {
					if ig == top || ig == src {
						t.Errorf("stage %s copies %s, which .dockerignore excludes", s.name, src)
					}
				}
			}
		}
	}
}
