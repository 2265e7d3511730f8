package crawl

import (
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/internal/bencscan"
	"github.com/magnetget/magnetget/torrentfile"
)

// ErrBadInfo reports an info dictionary the crawler cannot summarise.
var ErrBadInfo = errors.New("bad info dictionary")

// MaxInfoSize bounds the info dictionaries ParseInfo accepts (BEP 9
// metadata is fetched with the same 16 MiB cap by default).
const MaxInfoSize = 16 << 20

// ParseInfo summarises a bencoded info dictionary (as fetched over BEP 9)
// for the index: its name, total size and file list. Single-file torrents
// get one file whose path is the name.
func ParseInfo(b []byte) (md index.Metadata, err error) {
	if len(b) > MaxInfoSize {
		return md, fmt.Errorf("%w: %d bytes", ErrBadInfo, len(b))
	}
	// bencscan checks the syntax, nesting and string lengths first (an 18-byte dict that claims a
	// 128 MiB string allocated it before), then decodes with strings capped at len(b), and turns
	// the decoder's panics into errors.
	var info metainfo.Info
	if err := bencscan.DecodeBounded(b, &info); err != nil {
		return md, fmt.Errorf("%w: %w", ErrBadInfo, err)
	}
	var version struct {
		MetaVersion int64 `bencode:"meta version"`
	}
	if bencscan.DecodeBounded(b, &version) == nil && version.MetaVersion == 2 {
		// A v2 or hybrid torrent: its file tree lists the files without BEP 47 padding.
		return parseInfoV2(b)
	}
	md.Name = info.BestName()
	if len(info.Files) == 0 {
		if info.Length < 0 {
			return index.Metadata{}, fmt.Errorf("%w: negative length", ErrBadInfo)
		}
		md.Size = info.Length
		md.Files = []index.File{{Path: []string{md.Name}, Length: info.Length}}
		return md, nil
	}
	md.Files = make([]index.File, 0, len(info.Files))
	for _, f := range info.Files {
		if f.Length < 0 || md.Size+f.Length < md.Size {
			return index.Metadata{}, fmt.Errorf("%w: bad file length", ErrBadInfo)
		}
		md.Size += f.Length
		md.Files = append(md.Files, index.File{Path: f.BestPath(), Length: f.Length})
	}
	return md, nil
}

// parseInfoV2 summarises a v2 or hybrid info dictionary from its file tree.
func parseInfoV2(b []byte) (md index.Metadata, err error) {
	v, err := torrentfile.ParseInfoV2(b)
	if err != nil {
		return md, fmt.Errorf("%w: %w", ErrBadInfo, err)
	}
	md.Name, md.Size = v.Name, v.TotalLength
	md.Files = make([]index.File, 0, len(v.Files))
	for _, f := range v.Files {
		md.Files = append(md.Files, index.File{Path: f.Path, Length: f.Length})
	}
	return md, nil
}
