package data_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

func TestNewTokenizer(t *testing.T) {
	tests := []struct {
		name    string
		wantErr bool
	}{
		{"byte", false},
		{"bpe", true},
		{"", true},
	}
	for _, tt := range tests {
		tok, err := data.NewTokenizer(tt.name)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), `"`+tt.name+`"`) || !strings.HasPrefix(err.Error(), "data: ") {
				t.Errorf("NewTokenizer(%q) error = %v, want an error naming it", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("NewTokenizer(%q): %v", tt.name, err)
		}
		if tok.Name() != tt.name || tok.VocabSize() != 256 {
			t.Errorf("NewTokenizer(%q) = %s with vocab %d", tt.name, tok.Name(), tok.VocabSize())
		}
	}
}

func TestByteTokenizer(t *testing.T) {
	tok := data.ByteTokenizer{}
	tests := []struct {
		text string
		want []int32
	}{
		{"", []int32{}},
		{"ab", []int32{'a', 'b'}},
		{"\x00\xff", []int32{0, 255}},
		{"é", []int32{0xc3, 0xa9}},
	}
	for _, tt := range tests {
		got := tok.Encode([]byte(tt.text))
		if !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.text, got, tt.want)
		}
		if back := tok.Decode(got); !bytes.Equal(back, []byte(tt.text)) {
			t.Errorf("Decode(Encode(%q)) = %q", tt.text, back)
		}
	}
	if got := string(tok.Decode([]int32{'a', 256, -1, 'b'})); got != "a\uFFFD\uFFFDb" {
		t.Errorf("Decode with out-of-range ids = %q", got)
	}
}
