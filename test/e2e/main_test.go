package e2e

import (
	"os"
	"testing"

	"github.com/ecs-metadata-agent/ecs-metadata-agent/test/testbin"
)

// TestMain removes the binaries the tests built once they have run.
func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m))
}
