package meta

import (
	"context"
	"net/netip"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
)

// ltMetadata fetches magnet's metadata with libtorrent (the settings of
// realclient's lt.py, DHT joined through boot) and returns the time from
// starting python until the .torrent is written, the time lt.py measures
// itself (from just before the session is created until the info dict is
// complete: no interpreter start-up), and the .torrent's path.
func ltMetadata(ctx context.Context, magnet, dir string, boot netip.AddrPort, timeout time.Duration) (wall, inner time.Duration, torrent string, err error) {
	res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{
		Magnet: magnet, Dir: dir, Bootstrap: []netip.AddrPort{boot}, MetadataOnly: true, MaxLifetime: timeout,
	})
	return res.Wall, res.Metadata, res.Torrent, err
}
