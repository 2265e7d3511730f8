package swarm

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run when goroutines started by this package outlive the tests: Run must
// wait for everything it starts.
//
// With envSeederDir set, the binary is BenchmarkDownload's seeder child instead.
func TestMain(m *testing.M) {
	if os.Getenv(envSeederDir) != "" {
		if err := runSeederProcess(); err != nil {
			fmt.Fprintln(os.Stderr, "seeder:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines() string {
	var stacks string
	for range 50 { // goroutines may still be unwinding right after the last test
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		var leaked []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "magnetget/magnetget/swarm.") && !strings.Contains(g, "TestMain") &&
				!strings.Contains(g, "leakedGoroutines") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		stacks = strings.Join(leaked, "\n\n")
		time.Sleep(20 * time.Millisecond)
	}
	return stacks
}
