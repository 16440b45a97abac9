package testbin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMain(m *testing.M) {
	os.Exit(Main(m))
}

// TestRemoveBuilt checks that what Build makes does not outlive the test
// process: each run used to leave its binaries in a new temp directory.
func TestRemoveBuilt(t *testing.T) {
	p := Build(t, "ecs-metadata-mock")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("built binary: %v", err)
	}
	d := filepath.Dir(p)
	if err := removeBuilt(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Fatalf("%s still there after removeBuilt (stat: %v)", d, err)
	}
	again := Build(t, "ecs-metadata-mock")
	if _, err := os.Stat(again); err != nil {
		t.Fatalf("Build after removeBuilt: %v", err)
	}
	if filepath.Dir(again) == d {
		t.Fatalf("Build after removeBuilt reused the removed directory %s", d)
	}
}
