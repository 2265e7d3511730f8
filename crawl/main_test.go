package crawl

import (
	"os"
	"testing"

	"github.com/magnetget/magnetget/internal/pgtest"
)

// TestMain stops the private PostgreSQL server the shared-index tests
// start.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
