package data_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// run returns the next n batches of l and the cursor before each.
func run(t *testing.T, l *data.Loader, n int) ([]data.Batch, []data.Cursor) {
	t.Helper()
	batches := make([]data.Batch, n)
	cursors := make([]data.Cursor, n)
	for i := range n {
		cursors[i] = l.Cursor()
		b, err := l.Next()
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		batches[i] = b
	}
	return batches, cursors
}

func TestLoaderDeterministic(t *testing.T) {
	c := jsonlCorpus(t, randomDocs(2, 17, 30)...)
	cfg := data.LoaderConfig{SeqLen: 16, Shuffle: true, Seed: 7}
	a, _ := run(t, newLoader(t, c, cfg), 200)
	b, _ := run(t, newLoader(t, c, cfg), 200)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two loaders with the same seed differ")
	}
	cfg.Seed = 8
	other, _ := run(t, newLoader(t, c, cfg), 200)
	if reflect.DeepEqual(a, other) {
		t.Errorf("seeds 7 and 8 give the same batches")
	}
}

// TestLoaderSeekResume saves the cursor before each batch of a long run and
// checks that a fresh loader seeking to it (through JSON, as a checkpoint
// does) produces exactly the batches that followed in the run.
func TestLoaderSeekResume(t *testing.T) {
	const total, window = 300, 50 // batches in the run; batches compared after each seek
	c := jsonlCorpus(t, randomDocs(3, 11, 50)...)
	tests := []struct {
		name string
		cfg  data.LoaderConfig
	}{
		{"short, shuffled", data.LoaderConfig{SeqLen: 2, Shuffle: true, Seed: 1}},
		{"mid, shuffled", data.LoaderConfig{SeqLen: 7, Shuffle: true, Seed: 2}},
		{"long, shuffled", data.LoaderConfig{SeqLen: 64, Shuffle: true, Seed: 3}},
		{"mid, in order", data.LoaderConfig{SeqLen: 13}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, cursors := run(t, newLoader(t, c, tt.cfg), total)
			var midDoc, laterEpoch bool
			for k := 0; k < total; k += 1 + k%5 {
				saved, err := json.Marshal(cursors[k])
				if err != nil {
					t.Fatal(err)
				}
				var cur data.Cursor
				if err := json.Unmarshal(saved, &cur); err != nil {
					t.Fatal(err)
				}
				l := newLoader(t, c, tt.cfg)
				if err := l.Seek(cur); err != nil {
					t.Fatalf("seek %s: %v", saved, err)
				}
				end := min(k+window, total)
				got, _ := run(t, l, end-k)
				if !reflect.DeepEqual(got, want[k:end]) {
					t.Fatalf("resuming at batch %d from %s gives different batches", k, saved)
				}
				midDoc = midDoc || cur.Offset > 0
				laterEpoch = laterEpoch || cur.Epoch > 0
			}
			if !midDoc || !laterEpoch {
				t.Errorf("the run had no cursor mid-document (%v) or in a later epoch (%v); make it longer", midDoc, laterEpoch)
			}
		})
	}
}

func TestSeekErrors(t *testing.T) {
	c := jsonlCorpus(t, "abc", "defgh")
	l := newLoader(t, c, data.LoaderConfig{SeqLen: 4})
	tests := []struct {
		cur  data.Cursor
		want string
	}{
		{data.Cursor{Epoch: -1}, "epoch"},
		{data.Cursor{Doc: -1}, "doc"},
		{data.Cursor{Doc: 2}, "doc"},
		{data.Cursor{Offset: -1}, "offset"},
		{data.Cursor{Doc: 0, Offset: 3}, "offset"},
		{data.Cursor{Doc: 1, Offset: 5}, "offset"},
	}
	for _, tt := range tests {
		err := l.Seek(tt.cur)
		if err == nil || !strings.HasPrefix(err.Error(), "data: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Seek(%+v) error = %v, want one about %s", tt.cur, err, tt.want)
		}
	}
	if !reflect.DeepEqual(l.Cursor(), data.Cursor{}) {
		t.Errorf("failed seeks moved the cursor to %+v", l.Cursor())
	}
	if err := l.Seek(data.Cursor{Epoch: 5, Doc: 1, Offset: 4}); err != nil {
		t.Errorf("Seek to the last token of a document: %v", err)
	}
}
