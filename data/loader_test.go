package data_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// batch builds an expected batch; weights are 0/1 digits.
func batch(tokens, targets string, doc, pos []int32, weight string) data.Batch {
	w := make([]float32, len(weight))
	for i, c := range weight {
		if c == '1' {
			w[i] = 1
		}
	}
	return data.Batch{Tokens: ids(tokens), Targets: ids(targets), Pos: pos, Doc: doc, Weight: w}
}

func TestPackHandMade(t *testing.T) {
	tests := []struct {
		name    string
		docs    []string
		seqLen  int
		want    []data.Batch
		cursors []data.Cursor // after each batch
	}{
		{
			// The package doc's example: "defgh" is split across seq 0 and 1,
			// seq 2 crosses into epoch 1.
			name:   "split and epoch",
			docs:   []string{"abc", "defgh", "ij"},
			seqLen: 4,
			want: []data.Batch{
				batch("abcd", "bcde", []int32{0, 0, 0, 1}, []int32{0, 1, 2, 0}, "1101"),
				batch("efgh", "fghi", []int32{0, 0, 0, 0}, []int32{0, 1, 2, 3}, "1110"),
				batch("ijab", "jabc", []int32{0, 0, 1, 1}, []int32{0, 1, 0, 1}, "1011"),
				batch("cdef", "defg", []int32{0, 1, 1, 1}, []int32{0, 0, 1, 2}, "0111"),
			},
			cursors: []data.Cursor{{Epoch: 0, Doc: 1, Offset: 1}, {Epoch: 0, Doc: 2, Offset: 0}, {Epoch: 1, Doc: 0, Offset: 2}, {Epoch: 1, Doc: 1, Offset: 3}},
		},
		{
			name:   "one-token document",
			docs:   []string{"x", "yz"},
			seqLen: 2,
			want: []data.Batch{
				batch("xy", "yz", []int32{0, 1}, []int32{0, 0}, "01"),
				batch("zx", "xy", []int32{0, 1}, []int32{0, 0}, "00"),
			},
			cursors: []data.Cursor{{Epoch: 0, Doc: 1, Offset: 1}, {Epoch: 1, Doc: 1, Offset: 0}},
		},
		{
			// One document repeated: each epoch is a new segment.
			name:   "same document across epochs",
			docs:   []string{"ab"},
			seqLen: 3,
			want: []data.Batch{
				batch("aba", "bab", []int32{0, 0, 1}, []int32{0, 1, 0}, "101"),
				batch("bab", "aba", []int32{0, 1, 1}, []int32{0, 0, 1}, "010"),
			},
			cursors: []data.Cursor{{Epoch: 1, Doc: 0, Offset: 1}, {Epoch: 3, Doc: 0, Offset: 0}},
		},
		{
			name:   "sequence inside one document",
			docs:   []string{"abcdefghij"},
			seqLen: 3,
			want: []data.Batch{
				batch("abc", "bcd", []int32{0, 0, 0}, []int32{0, 1, 2}, "111"),
				batch("def", "efg", []int32{0, 0, 0}, []int32{0, 1, 2}, "111"),
				batch("ghi", "hij", []int32{0, 0, 0}, []int32{0, 1, 2}, "111"),
				batch("jab", "abc", []int32{0, 1, 1}, []int32{0, 0, 1}, "011"),
			},
			cursors: []data.Cursor{{Epoch: 0, Doc: 0, Offset: 3}, {Epoch: 0, Doc: 0, Offset: 6}, {Epoch: 0, Doc: 0, Offset: 9}, {Epoch: 1, Doc: 0, Offset: 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLoader(t, jsonlCorpus(t, tt.docs...), data.LoaderConfig{SeqLen: tt.seqLen})
			for i, want := range tt.want {
				got, err := l.Next()
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("batch %d:\n got %+v\nwant %+v", i, got, want)
				}
				if n := strings.Count(fmt.Sprint(want.Weight), "1"); got.NumTargets() != n {
					t.Errorf("batch %d: NumTargets = %d, want %d", i, got.NumTargets(), n)
				}
				if c := l.Cursor(); !reflect.DeepEqual(c, tt.cursors[i]) {
					t.Errorf("cursor after batch %d = %+v, want %+v", i, c, tt.cursors[i])
				}
			}
		})
	}
}

// randomDocs makes n documents of 1 to maxLen random letters.
func randomDocs(seed uint64, n, maxLen int) []string {
	r := rand.New(rand.NewPCG(seed, 0))
	docs := make([]string, n)
	for i := range docs {
		b := make([]byte, 1+r.IntN(maxLen))
		for j := range b {
			b[j] = byte('a' + r.IntN(26))
		}
		docs[i] = string(b)
	}
	return docs
}

// TestPackStream checks the packing rule on random documents in corpus order:
// the batches' tokens are the documents back to back, each target is the
// next token, and a weight is 1 exactly when no document starts at the target.
func TestPackStream(t *testing.T) {
	docs := randomDocs(1, 13, 40)
	var stream []int32
	var starts []bool // starts[i]: stream[i] begins a document
	for range 20 {
		for _, d := range docs {
			for j := range len(d) {
				stream = append(stream, int32(d[j]))
				starts = append(starts, j == 0)
			}
		}
	}
	for _, seqLen := range []int{2, 5, 64} {
		l := newLoader(t, jsonlCorpus(t, docs...), data.LoaderConfig{SeqLen: seqLen})
		for k := 0; (k+1)*seqLen < len(stream); k++ {
			b, err := l.Next()
			if err != nil {
				t.Fatal(err)
			}
			at := k * seqLen
			if !slices.Equal(b.Tokens, stream[at:at+seqLen]) || !slices.Equal(b.Targets, stream[at+1:at+seqLen+1]) {
				t.Fatalf("seq_len %d batch %d: tokens or targets differ from the stream", seqLen, k)
			}
			for i := range seqLen {
				want := float32(1)
				if starts[at+i+1] {
					want = 0
				}
				if b.Weight[i] != want {
					t.Fatalf("seq_len %d batch %d: weight[%d] = %v, want %v", seqLen, k, i, b.Weight[i], want)
				}
				newSeg := i == 0 || starts[at+i]
				wantDoc := int32(0)
				if i > 0 {
					wantDoc = b.Doc[i-1]
					if newSeg {
						wantDoc++
					}
				}
				if newSeg != (b.Pos[i] == 0) || (i > 0 && !newSeg && b.Pos[i] != b.Pos[i-1]+1) || b.Doc[i] != wantDoc {
					t.Fatalf("seq_len %d batch %d: pos %v doc %v wrong at %d", seqLen, k, b.Pos, b.Doc, i)
				}
			}
		}
	}
}

// TestShuffleEpochs uses one-token documents so that a batch of Len tokens is
// exactly one epoch's order.
func TestShuffleEpochs(t *testing.T) {
	docs := strings.Split("abcdefghij", "")
	c := jsonlCorpus(t, docs...)
	tests := []struct {
		shuffle bool
		seed    uint64
	}{{false, 0}, {true, 1}, {true, 2}}
	orders := map[uint64][]string{}
	for _, tt := range tests {
		l := newLoader(t, c, data.LoaderConfig{SeqLen: len(docs), Shuffle: tt.shuffle, Seed: tt.seed})
		seen := map[string]bool{}
		for epoch := range 8 {
			b, err := l.Next()
			if err != nil {
				t.Fatal(err)
			}
			order := string(data.ByteTokenizer{}.Decode(b.Tokens))
			sorted := []byte(order)
			slices.Sort(sorted)
			if string(sorted) != "abcdefghij" {
				t.Fatalf("shuffle %v seed %d epoch %d: order %q is not a permutation", tt.shuffle, tt.seed, epoch, order)
			}
			if !tt.shuffle && order != "abcdefghij" {
				t.Errorf("unshuffled epoch %d: order %q", epoch, order)
			}
			if b.NumTargets() != 0 {
				t.Errorf("one-token documents gave %d targets", b.NumTargets())
			}
			if c := l.Cursor(); !reflect.DeepEqual(c, data.Cursor{Epoch: epoch + 1}) {
				t.Errorf("cursor after epoch %d = %+v", epoch, c)
			}
			seen[order] = true
			if tt.shuffle {
				orders[tt.seed] = append(orders[tt.seed], order)
			}
		}
		if tt.shuffle && len(seen) < 4 {
			t.Errorf("seed %d: only %d distinct orders in 8 epochs", tt.seed, len(seen))
		}
	}
	if slices.Equal(orders[1], orders[2]) {
		t.Errorf("seeds 1 and 2 give the same orders")
	}
}

func TestNewLoaderErrors(t *testing.T) {
	c := jsonlCorpus(t, "some text")
	_, empty := c.Split(0)
	tests := []struct {
		name   string
		corpus *data.Corpus
		tok    data.Tokenizer
		seqLen int
		want   string
	}{
		{"seq_len 1", c, data.ByteTokenizer{}, 1, "seq_len"},
		{"seq_len 0", c, data.ByteTokenizer{}, 0, "seq_len"},
		{"empty corpus", empty, data.ByteTokenizer{}, 8, "no documents"},
		{"nil corpus", nil, data.ByteTokenizer{}, 8, "no documents"},
		{"nil tokenizer", c, nil, 8, "tokenizer"},
	}
	for _, tt := range tests {
		_, err := data.NewLoader(tt.corpus, tt.tok, data.LoaderConfig{SeqLen: tt.seqLen})
		if err == nil || !strings.HasPrefix(err.Error(), "data: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestLoaderReadsLazily deletes a file after the corpus is opened: batches
// before it still come, and the one that needs it fails naming it.
func TestLoaderReadsLazily(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "1.txt", "first document")
	writeFile(t, dir, "2.txt", "second document")
	gone := writeFile(t, dir, "3.txt", "third document")
	c, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_dir", Path: dir}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	l := newLoader(t, c, data.LoaderConfig{SeqLen: 8})
	if _, err := l.Next(); err != nil {
		t.Fatalf("first batch needs only %s: %v", filepath.Join(dir, "1.txt"), err)
	}
	for range 10 {
		if _, err = l.Next(); err != nil {
			break
		}
	}
	if err == nil || !strings.HasPrefix(err.Error(), "data: ") || !strings.Contains(err.Error(), gone) {
		t.Errorf("error = %v, want one naming %s", err, gone)
	}
	if _, err := c.Read(2); err == nil || !strings.Contains(err.Error(), gone) {
		t.Errorf("Read error = %v, want one naming %s", err, gone)
	}
}
