package metadata_test

import (
	"crypto/sha1"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
	"github.com/magnetget/magnetget/torrentfile"
)

// A magnet's xs= (the .torrent's URL, here on nginx) gives the metadata with no peer at all;
// beside it a 404, a file that is not a .torrent and another torrent's .torrent are passed over,
// and the info dict that comes back is the one asked for.
func TestFetchFromExactSource(t *testing.T) {
	root := t.TempDir()
	write := func(name string, info []byte) {
		data, err := torrentfile.Assemble(info, nil, []string{"http://127.0.0.1:1/announce"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("right.torrent", singleInfo)
	write("other.torrent", multiInfo)
	if err := os.WriteFile(filepath.Join(root, "junk.torrent"), []byte("<html>not found</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := rctest.Nginx(t, root)
	ih := sha1.Sum(singleInfo)

	res, err := fetch(t, ih, metadata.Options{Sources: []string{base + "missing.torrent", base + "junk.torrent",
		base + "other.torrent", base + "right.torrent"}})
	checkInfo(t, res, err, singleInfo)
	if len(res.Conns) != 0 {
		t.Errorf("%d connections handed on from no peers", len(res.Conns))
	}

	// Only wrong sources and no peers: Fetch ends, saying why, rather than waiting.
	_, err = fetch(t, ih, metadata.Options{Sources: []string{base + "missing.torrent", base + "other.torrent"}})
	if !errors.Is(err, metadata.ErrNoPeers) || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "another torrent's") {
		t.Fatalf("Fetch with only bad sources = %v, want ErrNoPeers naming the 404 and the wrong torrent", err)
	}

	// A source and seeders together: whichever answers first, the right info dict.
	ss := metadatatest.Seeders(t, singleInfo, 2)
	res, err = fetch(t, ih, metadata.Options{Sources: []string{base + "right.torrent"}}, metadatatest.Addrs(ss...)...)
	checkInfo(t, res, err, singleInfo)
}
