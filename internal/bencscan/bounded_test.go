package bencscan

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeBoundedHostile(t *testing.T) {
	for _, in := range []string{
		"",
		"d5:peers1099511627776:xe", // a string longer than the input
		strings.Repeat("l", 100000) + strings.Repeat("e", 100000), // nesting that would exhaust the stack
		"li5ee", // a list where a dict is wanted: the decoder panics inside
		"d1:ai1ee trailing",
		"i01e",
	} {
		var v struct {
			A map[string]any `bencode:"a"`
		}
		if err := DecodeBounded([]byte(in), &v); !errors.Is(err, ErrBencode) {
			t.Errorf("DecodeBounded(%.20q) = %v, want ErrBencode", in, err)
		}
	}
	var v struct {
		A int `bencode:"a"`
	}
	if err := DecodeBounded([]byte("d1:ai7ee"), &v); err != nil || v.A != 7 {
		t.Fatalf("DecodeBounded = %+v, %v", v, err)
	}
}

func TestItemsStringInt(t *testing.T) {
	items, err := Items([]byte("d1:ai-3e2:bbli1eee"), 10)
	if err != nil || len(items) != 4 || string(items[3]) != "li1ee" {
		t.Fatalf("Items = %q, %v", items, err)
	}
	if s, ok := Str(items[2]); !ok || string(s) != "bb" {
		t.Fatalf("String = %q %v", s, ok)
	}
	if n, ok := Int(items[1]); !ok || n != -3 {
		t.Fatalf("Int = %d %v", n, ok)
	}
	if items, _ := Items([]byte("li1ei2ei3ee"), 2); len(items) != 2 {
		t.Fatalf("Items with limit 2 gave %d", len(items))
	}
	for _, bad := range []string{"3:ab", "03:abc", "i5e", "x:"} {
		if _, ok := Str([]byte(bad)); ok {
			t.Errorf("Str(%q) ok", bad)
		}
	}
	for _, bad := range []string{"i-0e", "i01e", "i99999999999999999999e", "ie", "3:abc"} {
		if _, ok := Int([]byte(bad)); ok {
			t.Errorf("Int(%q) ok", bad)
		}
	}
}
