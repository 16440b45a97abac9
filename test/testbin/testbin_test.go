package testbin

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	os.Exit(Main(m))
}

// childEnv makes TestChildBuilds run: it is the child of TestMainRemovesBuilt.
const childEnv = "TESTBIN_CHILD_BUILDS"

// TestChildBuilds builds a binary and prints its path; it runs only as
// TestMainRemovesBuilt's child.
func TestChildBuilds(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs only as the child of TestMainRemovesBuilt")
	}
	os.Stdout.WriteString("built " + Build(t, "ecs-metadata-mock") + "\n")
}

// TestMainRemovesBuilt runs this test binary again, as a test process
// that builds a binary, and checks that what it built is gone once it has
// exited through Main: each run used to leave its binaries behind.
func TestMainRemovesBuilt(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestChildBuilds$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child test process: %v\n%s", err, out)
	}
	var built string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "built "); ok {
			built = p
		}
	}
	if built == "" {
		t.Fatalf("the child printed no built path:\n%s", out)
	}
	if _, err := os.Stat(filepath.Dir(built)); !os.IsNotExist(err) {
		t.Errorf("%s is still there after the child exited (stat: %v)", filepath.Dir(built), err)
		_ = os.RemoveAll(filepath.Dir(built))
	}
}

// TestSweepStale checks that the binary directories of processes that are
// gone are removed, and only those: not a live process's, not another PID
// namespace's, not one of another name.
func TestSweepStale(t *testing.T) {
	ns := pidNamespace()
	if ns == "0" {
		t.Skip("skipping: /proc/self/ns/pid is not readable, so nothing is swept")
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skipf("skipping: cannot run true to get a PID that has exited: %v", err)
	}
	dead, live := strconv.Itoa(gone.Process.Pid), strconv.Itoa(os.Getpid())
	tmp := t.TempDir()
	names := map[string]bool{ // name: whether the sweep should remove it
		binDirPrefix + ns + "-" + dead + "-123":     true,
		binDirPrefix + ns + "-" + live + "-456":     false,
		binDirPrefix + "1" + ns + "-" + dead + "-7": false, // another namespace
		binDirPrefix + dead + "-789":                false, // an older version's: no namespace
		binDirPrefix + ns + "-notapid-1":            false,
		"some-other-dir":                            false,
	}
	for n := range names {
		if err := os.Mkdir(filepath.Join(tmp, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sweepStale(tmp, ns)
	for n, removed := range names {
		_, err := os.Stat(filepath.Join(tmp, n))
		if gotRemoved := os.IsNotExist(err); gotRemoved != removed {
			t.Errorf("%s: removed %v, want %v", n, gotRemoved, removed)
		}
	}
}
