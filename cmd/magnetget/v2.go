package main

import (
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/torrentfile"
)

// infoView reads an info dict of any version (v1, v2-only or hybrid) as the
// v1-shaped view name, size, --select and the file listings work from. For a
// v1 or hybrid torrent it is the v1 info (a hybrid's pad files included: the
// swarm's Select counts them). For a v2-only torrent it is built from the v2
// file tree: Select counts V2.Files, and pieces never span two files.
func infoView(b []byte) (*metainfo.Info, *torrentfile.Torrent, error) {
	tor, err := torrentfile.FromInfoV2(b, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	if tor.V1 != nil {
		var info metainfo.Info
		if err := metainfoUnmarshal(b, &info); err != nil {
			return nil, nil, err
		}
		return &info, tor, nil
	}
	v := tor.V2
	info := &metainfo.Info{Name: v.Name, PieceLength: v.PieceLength}
	if v.Single {
		// libtorrent names a single-file v2 download after its file.
		info.Name, info.Length = v.Files[0].Path[0], v.Files[0].Length
		return info, tor, nil
	}
	for _, f := range v.Files {
		info.Files = append(info.Files, metainfo.FileInfo{Length: f.Length, Path: f.Path})
	}
	return info, tor, nil
}

// v2Pieces is how many pieces a torrent of any version has.
func numPieces(info *metainfo.Info, tor *torrentfile.Torrent) int {
	if tor != nil && tor.V1 == nil && tor.V2 != nil {
		return int(tor.V2.NumPieces)
	}
	return info.NumPieces()
}

// swarmHashesOf returns the 20-byte hashes a torrent's swarm is found under:
// first the one the swarm joins with (the v1 infohash, or the truncated v2
// one for a v2-only torrent), then, for a hybrid, the other.
func swarmHashesOf(tor *torrentfile.Torrent) [][20]byte {
	v1, has1 := tor.HashV1()
	v2, has2 := tor.HashV2()
	switch {
	case has1 && has2:
		return [][20]byte{v1, [20]byte(v2[:20])}
	case has2:
		return [][20]byte{[20]byte(v2[:20])}
	}
	return [][20]byte{v1}
}

// magnetOf is the magnet of a torrent of any version: btih and/or btmh.
func magnetOf(tor *torrentfile.Torrent, peers []string) string {
	m := &magnet.Magnet{Peers: peers}
	if ih, ok := tor.HashV1(); ok {
		m.InfoHash, m.HasV1 = ih, true
	}
	if ih, ok := tor.HashV2(); ok {
		m.InfoHashV2, m.HasV2 = ih, true
	}
	if info, _, err := infoView(tor.Meta.InfoBytes); err == nil {
		m.Name = info.BestName()
		m.Length = info.TotalLength()
		if tor.V2 != nil {
			m.Length = tor.V2.TotalLength // without a hybrid's padding
		}
	}
	for _, tier := range tor.Meta.UpvertedAnnounceList() {
		m.Trackers = append(m.Trackers, tier...)
	}
	m.WebSeeds = tor.Meta.UrlList
	return m.String()
}
