package crawl

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/crawl/index"
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
	// The bencode decoder is not ours; a panic on hostile bytes must
	// become an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			md, err = index.Metadata{}, fmt.Errorf("%w: decoder panicked: %v", ErrBadInfo, r)
		}
	}()
	// No string in b can be longer than b: capping at the input length
	// stops an 18-byte dict that claims a 128 MiB string from allocating
	// it (the decoder's default cap is 128 MiB). 0 would mean the default.
	r := bytes.NewReader(b)
	dec := bencode.NewDecoder(r)
	dec.MaxStrLen = int64(max(len(b), 1))
	var info metainfo.Info
	if err := dec.Decode(&info); err != nil {
		return md, fmt.Errorf("%w: %w", ErrBadInfo, err)
	}
	if r.Len() != 0 {
		return md, fmt.Errorf("%w: %d bytes after the dictionary", ErrBadInfo, r.Len())
	}
	var version struct {
		MetaVersion int64 `bencode:"meta version"`
	}
	vdec := bencode.NewDecoder(bytes.NewReader(b))
	vdec.MaxStrLen = dec.MaxStrLen
	if vdec.Decode(&version) == nil && version.MetaVersion == 2 {
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
