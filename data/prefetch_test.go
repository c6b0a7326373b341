package data_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/torusml/torus/data"
)

// pairTokenizer is a tokenizer with a fingerprint and affixes, as the Hugging
// Face ones are: a token per pair of bytes (so its ids are not the byte
// tokenizer's), BOS 1000 before every document and EOS 1001 after, counting
// its Encode calls.
type pairTokenizer struct {
	fp      string
	encodes atomic.Int64
}

func (p *pairTokenizer) Encode(text []byte) []int32 {
	p.encodes.Add(1)
	var ids []int32
	for i := 0; i < len(text); i += 2 {
		id := int32(text[i])
		if i+1 < len(text) {
			id = id*4 + int32(text[i+1])%4
		}
		ids = append(ids, id%999)
	}
	return ids
}
func (p *pairTokenizer) Decode(ids []int32) []byte         { return []byte(fmt.Sprint(ids)) }
func (p *pairTokenizer) VocabSize() int                    { return 1002 }
func (p *pairTokenizer) Name() string                      { return "pairs" }
func (p *pairTokenizer) Fingerprint() string               { return p.fp }
func (p *pairTokenizer) Affixes() (prefix, suffix []int32) { return []int32{1000}, []int32{1001} }

func prefetchDocs() []string {
	docs := make([]string, 23)
	for i := range docs {
		docs[i] = strings.Repeat(fmt.Sprintf("doc %d says %c. ", i, 'a'+i), 1+i%5)
	}
	return docs
}

// TestPrefetchIsInvisible: tokenizing ahead, in the background, gives the
// batches of tokenizing on demand, across lanes, shuffling, whole documents
// and seeks, with affixes and masks (sft-like spans come from the tokenizer's
// affixes here).
func TestPrefetchIsInvisible(t *testing.T) {
	c := jsonlCorpus(t, prefetchDocs()...)
	for _, cfg := range []data.LoaderConfig{
		{SeqLen: 16},
		{SeqLen: 16, Lanes: 4},
		{SeqLen: 32, Lanes: 3, Shuffle: true, Seed: 7},
		{SeqLen: 32, Lanes: 2, Whole: true},
	} {
		t.Run(fmt.Sprintf("lanes %d shuffle %v whole %v", cfg.Lanes, cfg.Shuffle, cfg.Whole), func(t *testing.T) {
			batches := func(prefetch int) []data.Batch {
				cfg := cfg
				cfg.Prefetch, cfg.Workers = prefetch, 3
				l, err := data.NewLoader(c, &pairTokenizer{}, cfg)
				if err != nil {
					t.Fatal(err)
				}
				var out []data.Batch
				for n := range 60 {
					if n == 30 { // a seek elsewhere drops what was started
						at := l.Cursor()
						for range 5 {
							l.Next()
						}
						if err := l.Seek(at); err != nil {
							t.Fatal(err)
						}
					}
					b, err := l.Next()
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, b)
				}
				return out
			}
			want, got := batches(0), batches(2)
			if !reflect.DeepEqual(got, want) {
				t.Fatal("batches with prefetch 2 differ from those without")
			}
			if want[0].Tokens[0] != 1000 {
				t.Errorf("the first token is %d, want the BOS affix 1000", want[0].Tokens[0])
			}
		})
	}
}

// TestTokenCache: a second loader over the same documents and tokenizer reads
// every document's ids from the cache and tokenizes nothing; another
// tokenizer fingerprint misses; a damaged entry is a miss, not an error.
func TestTokenCache(t *testing.T) {
	c := jsonlCorpus(t, prefetchDocs()...)
	dir := t.TempDir()
	load := func(tok *pairTokenizer, prefetch int) []data.Batch {
		l, err := data.NewLoader(c, tok, data.LoaderConfig{SeqLen: 16, Lanes: 2, Prefetch: prefetch, TokenCache: dir})
		if err != nil {
			t.Fatal(err)
		}
		var out []data.Batch
		for range 40 {
			b, err := l.Next()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	first := &pairTokenizer{fp: "pairs v1"}
	want := load(first, 0)
	if first.encodes.Load() == 0 {
		t.Fatal("the first run tokenized nothing")
	}
	again := &pairTokenizer{fp: "pairs v1"}
	if got := load(again, 2); !reflect.DeepEqual(got, want) {
		t.Fatal("batches from the cache differ")
	}
	if n := again.encodes.Load(); n != 0 {
		t.Errorf("the second run tokenized %d spans, want none (all cached)", n)
	}
	other := &pairTokenizer{fp: "pairs v2"}
	load(other, 0)
	if other.encodes.Load() == 0 {
		t.Error("another tokenizer fingerprint read the first one's ids")
	}

	entries, _ := filepath.Glob(filepath.Join(dir, "*", "*.tok"))
	if len(entries) == 0 {
		t.Fatal("no cache entries written")
	}
	for _, e := range entries { // torn writes, bit rot
		b, _ := os.ReadFile(e)
		os.WriteFile(e, b[:len(b)/2], 0o644)
	}
	damaged := &pairTokenizer{fp: "pairs v1"}
	if got := load(damaged, 0); !reflect.DeepEqual(got, want) {
		t.Fatal("batches over a damaged cache differ")
	}
	if damaged.encodes.Load() == 0 {
		t.Error("damaged entries were used")
	}
}
