package torrentfile

import (
	"errors"
	"strconv"

	"github.com/anacrolix/torrent/bencode"
)

// fileEntry is one element of an info dict's "files" list.
type fileEntry struct {
	Length   *int64
	Path     []string
	PathUtf8 []string
	Attr     string
}

// errFileType is a "files" element of the wrong shape; the caller wraps it.
var errFileType = errors.New("wrong type")

// decodeFiles decodes a "files" list that scanValue has already found to be
// well-formed bencode. A hand-written walk, because reflection-based
// decoding of a 10k-file list (a 4 MiB info dict) took tens of ms, most of
// `magnetget meta`'s time for such torrents.
func decodeFiles(b []byte) ([]fileEntry, error) {
	d := bdec{b: b}
	if !d.consume('l') {
		return nil, errFileType
	}
	var files []fileEntry
	for !d.consume('e') {
		if !d.consume('d') {
			return nil, errFileType
		}
		var f fileEntry
		for !d.consume('e') {
			key, err := d.str()
			if err != nil {
				return nil, err
			}
			switch key {
			case "length":
				n, err := d.int()
				if err != nil {
					return nil, err
				}
				f.Length = &n
			case "path":
				if f.Path, err = d.strList(); err != nil {
					return nil, err
				}
			case "path.utf-8":
				if f.PathUtf8, err = d.strList(); err != nil {
					return nil, err
				}
			case "attr":
				if f.Attr, err = d.str(); err != nil {
					return nil, err
				}
			default:
				if err := d.skip(); err != nil {
					return nil, err
				}
			}
		}
		files = append(files, f)
	}
	return files, nil
}

// dictFields splits a well-formed bencoded dict into its raw values by
// key, without copying them (the "pieces" of a large torrent are MiBs).
func dictFields(b []byte) (map[string]bencode.Bytes, error) {
	d := bdec{b: b}
	if !d.consume('d') {
		return nil, errFileType
	}
	out := make(map[string]bencode.Bytes)
	for !d.consume('e') {
		key, err := d.str()
		if err != nil {
			return nil, err
		}
		start := d.off
		if err := d.skip(); err != nil {
			return nil, err
		}
		out[key] = bencode.Bytes(b[start:d.off:d.off])
	}
	return out, nil
}

// bdec walks well-formed bencode (checked by scanValue beforehand), so it
// only has to report values of the wrong type, never syntax.
type bdec struct {
	b   []byte
	off int
}

func (d *bdec) consume(c byte) bool {
	if d.off < len(d.b) && d.b[d.off] == c {
		d.off++
		return true
	}
	return false
}

func (d *bdec) str() (string, error) {
	i := d.off
	for i < len(d.b) && d.b[i] >= '0' && d.b[i] <= '9' {
		i++
	}
	if i == d.off || i >= len(d.b) || d.b[i] != ':' {
		return "", errFileType
	}
	n, err := strconv.Atoi(string(d.b[d.off:i]))
	if err != nil || n > len(d.b)-i-1 {
		return "", errFileType
	}
	s := string(d.b[i+1 : i+1+n])
	d.off = i + 1 + n
	return s, nil
}

func (d *bdec) int() (int64, error) {
	if !d.consume('i') {
		return 0, errFileType
	}
	i := d.off
	for i < len(d.b) && d.b[i] != 'e' {
		i++
	}
	n, err := strconv.ParseInt(string(d.b[d.off:i]), 10, 64)
	if err != nil || i >= len(d.b) {
		return 0, errFileType
	}
	d.off = i + 1
	return n, nil
}

func (d *bdec) strList() ([]string, error) {
	if !d.consume('l') {
		return nil, errFileType
	}
	var out []string
	for !d.consume('e') {
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *bdec) skip() error {
	end, err := scanValue(d.b, d.off)
	if err != nil {
		return err
	}
	d.off = end
	return nil
}
