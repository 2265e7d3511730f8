package peerwire_test

import (
	"context"
	"encoding/hex"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// TestNewPeerIDFormat: an Azureus-style id (BEP 20) with our own client code, four version
// digits, and fresh random bytes each time.
func TestNewPeerIDFormat(t *testing.T) {
	a, b := peerwire.NewPeerID(), peerwire.NewPeerID()
	if !regexp.MustCompile(`^-MN[0-9]{4}-$`).Match(a[:8]) {
		t.Fatalf("peer id starts %q, want -MN and four digits between dashes", a[:8])
	}
	if string(a[:8]) != peerwire.PeerIDPrefix {
		t.Fatalf("peer id starts %q, PeerIDPrefix is %q", a[:8], peerwire.PeerIDPrefix)
	}
	if strings.HasPrefix(string(a[:]), "-MG") {
		t.Fatal(`peer id uses "-MG", MediaGet's code`)
	}
	if a == b {
		t.Fatal("two peer ids are equal")
	}
}

// TestPeerIDNotAnotherClient asks libtorrent's identify_client what it makes of our id: not
// MediaGet (what "-MG" gave) nor any other client it knows, only our own code and version.
func TestPeerIDNotAnotherClient(t *testing.T) {
	rctest.Require(t, realclient.LibtorrentAvailable)
	id := peerwire.NewPeerID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := `import sys, libtorrent as lt; print(lt.identify_client(lt.sha1_hash(bytes.fromhex(sys.argv[1]))))`
	out, err := exec.CommandContext(ctx, realclient.Python, "-c", script, hex.EncodeToString(id[:])).CombinedOutput()
	if err != nil {
		t.Fatalf("identify_client: %v: %s", err, out)
	}
	got := strings.TrimSpace(string(out))
	if got != "MN 0.1.0" {
		t.Fatalf("libtorrent identifies our peer id as %q, want %q (our code, unknown to it)", got, "MN 0.1.0")
	}
}
