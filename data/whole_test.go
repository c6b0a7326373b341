package data_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

func TestPackWholeHandMade(t *testing.T) {
	// seq_len 4: "abc" fits; "de" does not fit after it and starts the next
	// sequence (the rest is padding: its own document, no loss); "fghijk" is
	// longer than a sequence and is cut as always.
	l := newLoader(t, jsonlCorpus(t, "abc", "de", "fghijk"), data.LoaderConfig{SeqLen: 4, Whole: true})
	want := []data.Batch{
		batch("abc\x00", "bc\x00\x00", []int32{0, 0, 0, 1}, []int32{0, 1, 2, 0}, "1100"),
		batch("defg", "efgh", []int32{0, 0, 1, 1}, []int32{0, 1, 0, 1}, "1011"),
		batch("hijk", "ijk\x00", []int32{0, 0, 0, 0}, []int32{0, 1, 2, 3}, "1110"),
	}
	got, _ := run(t, l, len(want))
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("batch %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// TestPackWhole: over random documents, with whole packing every document of
// at most seq_len tokens lies within one sequence, padding never counts in the
// loss, and a loader sought to a cursor continues with the same batches.
func TestPackWhole(t *testing.T) {
	const L = 16
	for _, lanes := range []int{1, 3} {
		docs := randomDocs(11, 40, 2*L)
		c := jsonlCorpus(t, docs...)
		cfg := data.LoaderConfig{SeqLen: L, Whole: true, Lanes: lanes}
		batches, cursors := run(t, newLoader(t, c, cfg), 150)
		for i, b := range batches {
			// Each segment of the sequence: a piece of one document (or padding).
			for start := 0; start < L; {
				end := start
				for end < L && b.Doc[end] == b.Doc[start] {
					end++
				}
				piece := string(decode(b.Tokens[start:end]))
				if strings.Trim(piece, "\x00") == "" { // padding
					for k := start; k < end; k++ {
						if b.Weight[k] != 0 {
							t.Fatalf("lanes %d, batch %d: padding at %d counts in the loss", lanes, i, k)
						}
					}
				} else if !isWholeOrLong(piece, docs, L) {
					t.Fatalf("lanes %d, batch %d: %q (positions %d-%d) is a cut piece of a document that fits in a sequence", lanes, i, piece, start, end)
				}
				start = end
			}
		}
		// Exact resume from every cursor.
		for _, i := range []int{1, 7, 40, 99} {
			l := newLoader(t, c, cfg)
			if err := l.Seek(cursors[i]); err != nil {
				t.Fatal(err)
			}
			again, _ := run(t, l, 10)
			if !reflect.DeepEqual(again, batches[i:i+10]) {
				t.Errorf("lanes %d: seeking to the cursor of batch %d gives other batches", lanes, i)
			}
		}
	}
}

// isWholeOrLong: piece is a whole document, a piece of one longer than L, or
// a whole document but for its last token (which the next sequence's first
// position holds as a target of this one).
func isWholeOrLong(piece string, docs []string, L int) bool {
	for _, d := range docs {
		if len(d) > L && strings.Contains(d, piece) {
			return true
		}
		if piece == d {
			return true
		}
	}
	return false
}

func decode(ids []int32) []byte {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return b
}
