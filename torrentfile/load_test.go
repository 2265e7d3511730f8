package torrentfile

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
)

// enc bencodes v (maps encode with sorted keys).
func enc(t testing.TB, v any) []byte {
	t.Helper()
	b, err := bencode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// validInfo is a small multi-file info dict: 3 pieces of 16 KiB for 40000 bytes.
func validInfo() map[string]any {
	return map[string]any{
		"name":         "dir",
		"piece length": 16384,
		"pieces":       strings.Repeat("x", 60),
		"files": []any{
			map[string]any{"length": 30000, "path": []any{"a", "b"}},
			map[string]any{"length": 0, "path": []any{"zero"}},
			map[string]any{"length": 10000, "path": []any{"c"}},
		},
	}
}

func withInfo(mod func(info map[string]any)) map[string]any {
	info := validInfo()
	mod(info)
	return map[string]any{"announce": "http://127.0.0.1:1/a", "info": info}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		data any // []byte verbatim, or a value to bencode
		want string
		err  error
	}{
		{"empty", []byte{}, "empty file", ErrInvalid},
		{"html", []byte("<html>"), "not a bencoded dictionary", ErrInvalid},
		{"list", []byte("le"), "not a bencoded dictionary", ErrInvalid},
		{"truncated", []byte("d4:infod4:name"), "unexpected end", ErrInvalid},
		{"trailing", append(enc(t, withInfo(func(map[string]any) {})), "\nx"...), "trailing garbage", ErrInvalid},
		{"huge string", []byte("d4:info99999999999:x"), "longer than the data", ErrInvalid},
		{"leading zero", []byte("d04:infoe"), "leading zero", ErrInvalid},
		{"bad int", []byte("d1:ai-0ee"), "bad integer", ErrInvalid},
		{"int key", []byte("di1e1:ae"), "key is not a string", ErrInvalid},
		{"key without value", []byte("d1:ae"), "key without a value", ErrInvalid},
		{"deep", []byte("d1:a" + strings.Repeat("l", 100000) + strings.Repeat("e", 100000) + "e"), "nesting too deep", ErrInvalid},
		{"no info", map[string]any{"announce": "x"}, "no info dict", ErrInvalid},
		{"info not dict", map[string]any{"info": "x"}, "info is not a dictionary", ErrInvalid},
		{"no pieces", withInfo(func(i map[string]any) { delete(i, "pieces") }), "no pieces", ErrInvalid},
		{"v2 only", withInfo(func(i map[string]any) {
			delete(i, "pieces")
			delete(i, "files")
			i["meta version"] = 2
			i["file tree"] = map[string]any{}
		}), "v2-only", ErrUnsupported},
		{"pieces not multiple of 20", withInfo(func(i map[string]any) { i["pieces"] = strings.Repeat("x", 59) }), "not a multiple of 20", ErrInvalid},
		{"too few pieces", withInfo(func(i map[string]any) { i["pieces"] = strings.Repeat("x", 40) }), "2 piece hashes for 40000 bytes", ErrInvalid},
		{"too many pieces", withInfo(func(i map[string]any) { i["pieces"] = strings.Repeat("x", 80) }), "4 piece hashes", ErrInvalid},
		{"no piece length", withInfo(func(i map[string]any) { delete(i, "piece length") }), `no "piece length"`, ErrInvalid},
		{"zero piece length", withInfo(func(i map[string]any) { i["piece length"] = 0 }), "piece length 0 out of range", ErrInvalid},
		{"negative piece length", withInfo(func(i map[string]any) { i["piece length"] = -16384 }), "out of range", ErrInvalid},
		{"string piece length", withInfo(func(i map[string]any) { i["piece length"] = "16384" }), "wrong type", ErrInvalid},
		{"no name", withInfo(func(i map[string]any) { delete(i, "name") }), `no "name"`, ErrInvalid},
		{"empty name", withInfo(func(i map[string]any) { i["name"] = "" }), "empty name", ErrInvalid},
		{"dotdot name", withInfo(func(i map[string]any) { i["name"] = ".." }), `name ".."`, ErrInvalid},
		{"slash name", withInfo(func(i map[string]any) { i["name"] = "a/b" }), "contains '/'", ErrInvalid},
		{"both length and files", withInfo(func(i map[string]any) { i["length"] = 40000 }), "both", ErrInvalid},
		{"neither length nor files", withInfo(func(i map[string]any) { delete(i, "files") }), "neither", ErrInvalid},
		{"empty files", withInfo(func(i map[string]any) { i["files"] = []any{} }), "empty \"files\"", ErrInvalid},
		{"zero total", withInfo(func(i map[string]any) {
			delete(i, "files")
			i["length"] = 0
			i["pieces"] = ""
		}), "total length is zero", ErrInvalid},
		{"negative length", withInfo(func(i map[string]any) { delete(i, "files"); i["length"] = -1 }), "length -1 out of range", ErrInvalid},
		{"file without length", withInfo(func(i map[string]any) {
			i["files"] = []any{map[string]any{"path": []any{"a"}}}
		}), "file 0: no length", ErrInvalid},
		{"empty path", withInfo(func(i map[string]any) {
			i["files"] = []any{map[string]any{"length": 40000, "path": []any{}}}
		}), "empty path", ErrInvalid},
		{"empty component", withInfo(func(i map[string]any) {
			i["files"] = []any{map[string]any{"length": 40000, "path": []any{"a", ""}}}
		}), "empty name", ErrInvalid},
		{"dotdot path", withInfo(func(i map[string]any) {
			i["files"] = []any{map[string]any{"length": 40000, "path": []any{"..", "etc", "passwd"}}}
		}), `file 0: path "../etc/passwd": name ".."`, ErrInvalid},
		{"slash in component", withInfo(func(i map[string]any) {
			i["files"] = []any{map[string]any{"length": 40000, "path": []any{"/etc/passwd"}}}
		}), "contains '/'", ErrInvalid},
		{"nul in component", withInfo(func(i map[string]any) {
			i["files"] = []any{map[string]any{"length": 40000, "path": []any{"a\x00b"}}}
		}), "contains NUL", ErrInvalid},
		{"bad path.utf-8", withInfo(func(i map[string]any) {
			i["files"] = []any{map[string]any{"length": 40000, "path": []any{"a"}, "path.utf-8": []any{".."}}}
		}), "path.utf-8", ErrInvalid},
		{"duplicate path", withInfo(func(i map[string]any) {
			i["files"] = []any{
				map[string]any{"length": 20000, "path": []any{"a"}},
				map[string]any{"length": 20000, "path": []any{"a"}},
			}
		}), "appears twice", ErrInvalid},
		{"file under file", withInfo(func(i map[string]any) {
			i["files"] = []any{
				map[string]any{"length": 20000, "path": []any{"a"}},
				map[string]any{"length": 20000, "path": []any{"a", "b"}},
			}
		}), "inside file", ErrInvalid},
		{"file over dir", withInfo(func(i map[string]any) {
			i["files"] = []any{
				map[string]any{"length": 20000, "path": []any{"a", "b"}},
				map[string]any{"length": 20000, "path": []any{"a"}},
			}
		}), "both a file and a directory", ErrInvalid},
		{"files not list", withInfo(func(i map[string]any) { i["files"] = "x" }), `bad "files"`, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, ok := tc.data.([]byte)
			if !ok {
				data = enc(t, tc.data)
			}
			mi, err := Parse(data)
			if err == nil {
				t.Fatalf("accepted: %+v", mi)
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %q: want %v containing %q", err, tc.err, tc.want)
			}
		})
	}
}

func TestParseAcceptsValid(t *testing.T) {
	data := enc(t, map[string]any{
		"info":          validInfo(),
		"announce":      "http://127.0.0.1:1/a",
		"announce-list": []any{[]any{"http://127.0.0.1:1/a", "http://127.0.0.1:2/a"}, []any{"udp://127.0.0.1:3"}},
		"comment":       42, // wrong type: dropped, not fatal
		"creation date": 1700000000,
		"url-list":      "http://127.0.0.1:4/ws", // a single string is allowed (BEP 19)
		"nodes":         []any{[]any{"127.0.0.1", 6881}},
		"unknown":       map[string]any{"x": 1},
	})
	mi, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if mi.Announce != "http://127.0.0.1:1/a" || len(mi.AnnounceList) != 2 || len(mi.AnnounceList[0]) != 2 ||
		mi.Comment != "" || mi.CreationDate != 1700000000 || len(mi.UrlList) != 1 || len(mi.Nodes) != 1 {
		t.Errorf("fields: %+v", mi)
	}
	if want := enc(t, validInfo()); !bytes.Equal(mi.InfoBytes, want) {
		t.Errorf("info bytes not verbatim")
	}

	// BEP 47 padding files of a hybrid torrent share a path; they are not a conflict.
	hybrid := validInfo()
	hybrid["files"] = []any{
		map[string]any{"length": 100, "path": []any{"a"}},
		map[string]any{"length": 16284, "path": []any{".pad", "16284"}, "attr": "p"},
		map[string]any{"length": 100, "path": []any{"b"}},
		map[string]any{"length": 16284, "path": []any{".pad", "16284"}, "attr": "p"},
		map[string]any{"length": 100, "path": []any{"c"}},
	}
	hybrid["pieces"] = strings.Repeat("x", 60)
	hybrid["meta version"] = 2
	hybrid["file tree"] = map[string]any{"a": map[string]any{"": map[string]any{"length": 100}}}
	if _, err := Parse(enc(t, map[string]any{"info": hybrid})); err != nil {
		t.Errorf("hybrid torrent with padding files: %v", err)
	}
}

func TestLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "tree"), trickyTree)
	mi := mustCreate(t, filepath.Join(dir, "tree"), Options{
		Comment: "c", Trackers: []string{"http://127.0.0.1:1/a", "http://127.0.0.1:2/a"}, WebSeeds: []string{"http://127.0.0.1:3/"},
	})
	p := writeFile(t, dir, "x.torrent", mi)
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, mi) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, mi)
	}
	if _, err := Load(filepath.Join(dir, "missing.torrent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.torrent")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: the size cap must trigger before anything is parsed.
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load(p); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err %v, want ErrTooLarge", err)
	}
	// A pipe has no size to check up front: the read limit catches it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		defer w.Close()
		block := make([]byte, 1<<20)
		for range MaxFileSize>>20 + 1 {
			if _, err := w.Write(block); err != nil {
				return
			}
		}
	}()
	if _, err := Load(fmt.Sprintf("/dev/fd/%d", r.Fd())); !errors.Is(err, ErrTooLarge) {
		t.Errorf("pipe: err %v, want ErrTooLarge", err)
	}
}

func TestFromInfoKeepsBytesVerbatim(t *testing.T) {
	// Keys out of order and an unknown key: re-encoding would change the infohash.
	info := []byte("d4:name3:dir12:piece lengthi16384e6:pieces20:" + strings.Repeat("y", 20) +
		"6:lengthi5e1:zi1ee")
	mi, err := FromInfo(info, []string{"http://127.0.0.1:1/a"})
	if err != nil {
		t.Fatal(err)
	}
	if InfoHash(mi) != sha1.Sum(info) || !bytes.Equal(mi.InfoBytes, info) {
		t.Error("info bytes were not kept verbatim")
	}
	if mi.Announce != "http://127.0.0.1:1/a" || mi.CreatedBy != "magnetget" {
		t.Errorf("announce %q created by %q", mi.Announce, mi.CreatedBy)
	}
	var buf bytes.Buffer
	if err := Write(&buf, mi); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(buf.Bytes())
	if err != nil || InfoHash(back) != sha1.Sum(info) {
		t.Errorf("written and parsed back: %v, hash %x", err, InfoHash(back))
	}

	for _, tc := range []struct {
		info []byte
		want string
	}{
		{nil, "empty info dict"},
		{[]byte("le"), "not a bencoded dictionary"},
		{append(bytes.Clone(info), 'x'), "trailing garbage after the info dict"},
		{info[:len(info)-1], "unexpected end"},
		{[]byte("d4:name3:dir12:piece lengthi16384e6:pieces19:" + strings.Repeat("y", 19) + "6:lengthi5ee"), "multiple of 20"},
	} {
		if _, err := FromInfo(tc.info, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FromInfo(%q): err %v, want ErrInvalid with %q", tc.info, err, tc.want)
		}
	}
	if err := Write(&buf, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Write(nil): %v", err)
	}
}

// A path of very many components is accepted, a duplicate of it found, and the error stays short.
// The path check is linear in the number of components (joining every directory prefix, as a
// first version did, is quadratic and turned a few MiB of .torrent into minutes of CPU).
func TestParseDeepPathIsLinear(t *testing.T) {
	const depth = 30000
	path := make([]any, depth)
	for i := range path {
		path[i] = "a"
	}
	mi, err := Parse(enc(t, withInfo(func(i map[string]any) {
		i["files"] = []any{
			map[string]any{"length": 20000, "path": path},
			map[string]any{"length": 20000, "path": append(path[:depth-1:depth-1], "b")},
		}
	})))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(mustInfo(t, mi).Files[1].Path); got != depth {
		t.Errorf("%d components, want %d", got, depth)
	}
	_, err = Parse(enc(t, withInfo(func(i map[string]any) {
		i["files"] = []any{
			map[string]any{"length": 20000, "path": path},
			map[string]any{"length": 20000, "path": path},
		}
	})))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "appears twice") || len(err.Error()) > 400 {
		t.Errorf("duplicate deep path: %v", err)
	}
}

// TestParseAcceptsTrailingNewline: a .torrent with a final newline (an
// editor's, `echo >>`'s, a CRLF download's) is the same torrent.
func TestParseAcceptsTrailingNewline(t *testing.T) {
	data := enc(t, withInfo(func(map[string]any) {}))
	want, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tail := range []string{"\n", "\r\n", " \n\n"} {
		mi, err := Parse(append(bytes.Clone(data), tail...))
		if err != nil {
			t.Errorf("%q after the dictionary: %v", tail, err)
			continue
		}
		if mi.HashInfoBytes() != want.HashInfoBytes() {
			t.Errorf("%q after the dictionary changed the infohash", tail)
		}
	}
}
