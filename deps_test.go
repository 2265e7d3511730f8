package magnetget

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraph keeps the dependency rules of doc/DESIGN.md true: one
// way, no cycles (the compiler sees to that), bbolt only behind routing and
// the crawl index, nothing importing cmd, no test machinery in the product,
// and never anacrolix/torrent's root package (a whole other client).
func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/magnetget/magnetget"
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		// Packages that exist to help tests may import testing.
		testHelper := strings.HasSuffix(p.ImportPath, "test")
		for _, imp := range p.Imports {
			switch {
			case strings.HasPrefix(imp, mod+"/cmd"):
				t.Errorf("%s imports %s: nothing imports cmd", p.ImportPath, imp)
			case imp == "go.etcd.io/bbolt" && p.ImportPath != mod+"/routing" && p.ImportPath != mod+"/crawl/index" && p.ImportPath != mod+"/internal/boltsafe":
				t.Errorf("%s imports bbolt: only routing and crawl/index own database files", p.ImportPath)
			case imp == "testing" && !testHelper:
				t.Errorf("%s imports testing outside a test helper package", p.ImportPath)
			case imp == "github.com/anacrolix/torrent":
				t.Errorf("%s imports anacrolix/torrent's root package: use its leaf packages only", p.ImportPath)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list saw only %d packages", seen)
	}
}
