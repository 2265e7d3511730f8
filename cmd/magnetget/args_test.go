package main

import (
	"io"
	"reflect"
	"testing"
)

func TestPermuteArgs(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	cases := []struct{ in, want []string }{
		{[]string{"m", "seed", "dir", "-o", "x.torrent", "--print-peer"}, []string{"m", "seed", "-o", "x.torrent", "--print-peer", "dir"}},
		{[]string{"m", "magnet:?xt=1", "--seed", "-o", "dl"}, []string{"m", "--seed", "-o", "dl", "magnet:?xt=1"}},
		{[]string{"m", "crawl", "export", "--format", "csv"}, []string{"m", "crawl", "export", "--format", "csv"}},
		{[]string{"m", "lookup", "ih", "--timeout=5s", "--json"}, []string{"m", "lookup", "--timeout=5s", "--json", "ih"}},
		{[]string{"m", "meta", "--", "-weird"}, []string{"m", "meta", "--", "-weird"}},
	}
	for _, c := range cases {
		if got := permuteArgs(app, c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("permuteArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
