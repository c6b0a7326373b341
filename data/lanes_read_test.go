package data_test

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/torusml/torus/data"
)

// countingTokenizer is the byte tokenizer without the byte drop, counting
// Encode calls: one per document the loader reads.
type countingTokenizer struct {
	data.ByteTokenizer
	drop    byte
	encodes atomic.Int64
}

func (c *countingTokenizer) Encode(text []byte) []int32 {
	c.encodes.Add(1)
	return c.ByteTokenizer.Encode(bytes.ReplaceAll(text, []byte{c.drop}, nil))
}

// TestLanesReadEachDocumentOnce checks that each lane keeps its own document:
// interleaving lanes does not make them read their documents again.
func TestLanesReadEachDocumentOnce(t *testing.T) {
	docs := make([]string, 6)
	for i := range docs {
		docs[i] = strings.Repeat(string(rune('a'+i)), 50)
	}
	tok := &countingTokenizer{}
	l, err := data.NewLoader(jsonlCorpus(t, docs...), tok, data.LoaderConfig{SeqLen: 8, Lanes: 3})
	if err != nil {
		t.Fatal(err)
	}
	run(t, l, 3*25)
	// Each lane packed 25 sequences: tokens 0 to 200 of its stream, which
	// are in its first 5 documents of 50 tokens.
	if n := tok.encodes.Load(); n != 3*5 {
		t.Errorf("%d documents read, want %d", n, 3*5)
	}
	if err := l.Seek(l.Cursor()); err != nil {
		t.Fatal(err)
	}
	run(t, l, 3)
	if n := tok.encodes.Load(); n != 3*5 {
		t.Errorf("seeking to where the lanes are and going on read %d more documents", n-3*5)
	}
}

// TestLanesEmptyDocuments uses a tokenizer that drops 'x', so that some
// documents have no tokens: lanes skip them, and a lane that can never find a
// token is an error rather than a loop.
func TestLanesEmptyDocuments(t *testing.T) {
	tests := []struct {
		name    string
		docs    []string
		cfg     data.LoaderConfig
		wantErr string // "": 200 batches without x
	}{
		{"one lane skips", []string{"xx", "ab", "xxx", "cd"}, data.LoaderConfig{SeqLen: 3}, ""},
		{"lanes skip", []string{"xx", "ab", "xxx", "cd", "efg"}, data.LoaderConfig{SeqLen: 3, Lanes: 2}, ""},
		{"shuffled lanes skip", []string{"xx", "ab", "xxx", "cd"}, data.LoaderConfig{SeqLen: 3, Lanes: 2, Shuffle: true, Seed: 1}, ""},
		{"one per lane, shuffled", []string{"xx", "ab", "xxx", "cd"}, data.LoaderConfig{SeqLen: 3, Lanes: 4, Shuffle: true, Seed: 1}, ""},
		{"a lane of empty documents", []string{"xx", "ab", "xxx", "cd"}, data.LoaderConfig{SeqLen: 3, Lanes: 2}, "lane 0: the lane's documents (corpus indices 0, 0+2, ... below 4)"},
		{"one empty per lane", []string{"ab", "xx"}, data.LoaderConfig{SeqLen: 3, Lanes: 2}, "lane 1: the lane's documents (corpus indices 1, 1+2, ... below 2)"},
		{"all empty", []string{"xx", "x", "xxx"}, data.LoaderConfig{SeqLen: 3}, "no document has any tokens"},
		{"all empty, lanes", []string{"xx", "x", "xxx"}, data.LoaderConfig{SeqLen: 3, Lanes: 2, Shuffle: true}, "no document has any tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := data.NewLoader(jsonlCorpus(t, tt.docs...), &countingTokenizer{drop: 'x'}, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for n := range 200 {
				b, err := l.Next()
				if err != nil {
					if tt.wantErr == "" || !strings.HasPrefix(err.Error(), "data: next batch") || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("batch %d: error %v, want one containing %q", n, err, tt.wantErr)
					}
					return
				}
				if text := string(data.ByteTokenizer{}.Decode(b.Tokens)); strings.Contains(text, "x") {
					t.Fatalf("batch %d has an x: %q", n, text)
				}
			}
			if tt.wantErr != "" {
				t.Errorf("200 batches and no error, want one containing %q", tt.wantErr)
			}
		})
	}
}
