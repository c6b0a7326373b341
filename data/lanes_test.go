package data_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// TestLanesHandMade reads five documents in corpus order through three lanes.
// Lane 0 packs "abcde" "mn", lane 1 "fg" "opq", lane 2 "hijkl", each then
// going on with its share of epoch 1; lane 2 is the first to get there.
func TestLanesHandMade(t *testing.T) {
	l := newLoader(t, jsonlCorpus(t, "abcde", "fg", "hijkl", "mn", "opq"), data.LoaderConfig{SeqLen: 3, Lanes: 3})
	type lc = data.LaneCursor
	want := []struct {
		lane  int
		batch data.Batch
		lanes []data.LaneCursor // after the batch
	}{
		{0, batch("abc", "bcd", []int32{0, 0, 0}, []int32{0, 1, 2}, "111"), []lc{{0, 0, 3}, {0, 1, 0}, {0, 2, 0}}},
		{1, batch("fgo", "gop", []int32{0, 0, 1}, []int32{0, 1, 0}, "101"), []lc{{0, 0, 3}, {0, 4, 1}, {0, 2, 0}}},
		{2, batch("hij", "ijk", []int32{0, 0, 0}, []int32{0, 1, 2}, "111"), []lc{{0, 0, 3}, {0, 4, 1}, {0, 2, 3}}},
		{0, batch("dem", "emn", []int32{0, 0, 1}, []int32{0, 1, 0}, "101"), []lc{{0, 3, 1}, {0, 4, 1}, {0, 2, 3}}},
		{1, batch("pqf", "qfg", []int32{0, 0, 1}, []int32{0, 1, 0}, "101"), []lc{{0, 3, 1}, {1, 1, 1}, {0, 2, 3}}},
		{2, batch("klh", "lhi", []int32{0, 0, 1}, []int32{0, 1, 0}, "101"), []lc{{0, 3, 1}, {1, 1, 1}, {1, 2, 1}}},
		{0, batch("nab", "abc", []int32{0, 1, 1}, []int32{0, 0, 1}, "011"), []lc{{1, 0, 2}, {1, 1, 1}, {1, 2, 1}}},
		{1, batch("gop", "opq", []int32{0, 1, 1}, []int32{0, 0, 1}, "011"), []lc{{1, 0, 2}, {1, 4, 2}, {1, 2, 1}}},
	}
	for n, w := range want {
		got, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, w.batch) {
			t.Errorf("batch %d (lane %d):\n got %+v\nwant %+v", n, w.lane, got, w.batch)
		}
		next := (n + 1) % 3
		p := w.lanes[next]
		wantCur := data.Cursor{Epoch: p.Epoch, Doc: p.Doc, Offset: p.Offset, Next: next, Lanes: w.lanes}
		if c := l.Cursor(); !reflect.DeepEqual(c, wantCur) {
			t.Errorf("cursor after batch %d = %+v, want %+v", n, c, wantCur)
		}
	}
	got, err := json.Marshal(l.Cursor())
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"epoch":1,"doc":2,"offset":1,"next":2,"lanes":[{"epoch":1,"doc":0,"offset":2},{"epoch":1,"doc":4,"offset":2},{"epoch":1,"doc":2,"offset":1}]}`
	if string(got) != wantJSON {
		t.Errorf("cursor JSON = %s\nwant %s", got, wantJSON)
	}
}

// epochOrders returns the document orders of the first epochs of a shuffled
// n-document corpus, read off a one-lane loader over one-letter documents.
func epochOrders(t *testing.T, n int, seed uint64, epochs int) [][]int {
	t.Helper()
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	l := newLoader(t, jsonlCorpus(t, strings.Split(letters[:n], "")...), data.LoaderConfig{SeqLen: n, Shuffle: true, Seed: seed})
	orders := make([][]int, epochs)
	for e := range orders {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range b.Tokens {
			orders[e] = append(orders[e], strings.IndexByte(letters, byte(id)))
		}
	}
	return orders
}

// laneBatches packs by the rule of the package doc, independently of the
// loader: lane j's stream is documents orders[e][j], orders[e][j+K], ... for
// e = 0, 1, ..., and batch n is the next sequence of lane n mod K. It returns
// the batches up to the first that needs an epoch past those of orders.
func laneBatches(docs []string, orders [][]int, lanes, seqLen int) []data.Batch {
	type tok struct {
		id   int32
		inst int // epoch*len(docs) + index into the order: a document's occurrence
	}
	streams := make([][]tok, lanes)
	for e, order := range orders {
		for i, d := range order {
			for _, c := range []byte(docs[d]) {
				streams[i%lanes] = append(streams[i%lanes], tok{int32(c), e*len(docs) + i})
			}
		}
	}
	var batches []data.Batch
	for n := 0; ; n++ {
		s := streams[n%lanes][min(n/lanes*seqLen, len(streams[n%lanes])):]
		if len(s) < seqLen+1 {
			return batches
		}
		b := data.Batch{Tokens: make([]int32, seqLen), Targets: make([]int32, seqLen), Pos: make([]int32, seqLen), Doc: make([]int32, seqLen), Weight: make([]float32, seqLen)}
		for i := range seqLen {
			b.Tokens[i], b.Targets[i] = s[i].id, s[i+1].id
			if i > 0 && s[i].inst == s[i-1].inst {
				b.Doc[i], b.Pos[i] = b.Doc[i-1], b.Pos[i-1]+1
			} else if i > 0 {
				b.Doc[i] = b.Doc[i-1] + 1
			}
			if s[i].inst == s[i+1].inst {
				b.Weight[i] = 1
			}
		}
		batches = append(batches, b)
	}
}

// TestLanesMatchReference compares the loader with laneBatches on random
// documents, for lane counts up to and past the number of documents.
func TestLanesMatchReference(t *testing.T) {
	const nDocs, epochs = 13, 30
	docs := randomDocs(4, nDocs, 30)
	c := jsonlCorpus(t, docs...)
	inOrder := make([][]int, epochs)
	for e := range inOrder {
		for i := range nDocs {
			inOrder[e] = append(inOrder[e], i)
		}
	}
	for _, shuffle := range []bool{false, true} {
		orders := inOrder
		if shuffle {
			orders = epochOrders(t, nDocs, 9, epochs)
		}
		for _, lanes := range []int{1, 2, 3, 5, nDocs, 20} {
			for _, seqLen := range []int{2, 7, 16} {
				want := laneBatches(docs, orders, min(lanes, nDocs), seqLen)
				if len(want) < 4*min(lanes, nDocs) {
					t.Fatalf("lanes %d, seq_len %d: only %d batches in %d epochs", lanes, seqLen, len(want), epochs)
				}
				l := newLoader(t, c, data.LoaderConfig{SeqLen: seqLen, Shuffle: shuffle, Seed: 9, Lanes: lanes})
				got, _ := run(t, l, len(want))
				for n := range got {
					if !reflect.DeepEqual(got[n], want[n]) {
						t.Fatalf("shuffle %v, lanes %d, seq_len %d: batch %d\n got %+v\nwant %+v", shuffle, lanes, seqLen, n, got[n], want[n])
					}
				}
			}
		}
	}
}

// TestLanesOneIsDefault checks that Lanes 1 is Lanes 0, today's single stream.
func TestLanesOneIsDefault(t *testing.T) {
	c := jsonlCorpus(t, randomDocs(5, 9, 40)...)
	cfg := data.LoaderConfig{SeqLen: 11, Shuffle: true, Seed: 3}
	a, ac := run(t, newLoader(t, c, cfg), 150)
	cfg.Lanes = 1
	b, bc := run(t, newLoader(t, c, cfg), 150)
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ac, bc) {
		t.Errorf("lanes 1 differs from lanes 0")
	}
	for _, cur := range bc {
		if cur.Next != 0 || cur.Lanes != nil {
			t.Fatalf("one-lane cursor %+v has lane fields", cur)
		}
	}
}

func TestLanesDeterministic(t *testing.T) {
	c := jsonlCorpus(t, randomDocs(6, 17, 30)...)
	for _, lanes := range []int{2, 5} {
		cfg := data.LoaderConfig{SeqLen: 16, Shuffle: true, Seed: 7, Lanes: lanes}
		a, _ := run(t, newLoader(t, c, cfg), 300)
		b, _ := run(t, newLoader(t, c, cfg), 300)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("lanes %d: two loaders with the same seed differ", lanes)
		}
		cfg.Lanes = 1
		one, _ := run(t, newLoader(t, c, cfg), 300)
		if reflect.DeepEqual(a, one) {
			t.Errorf("lanes %d gives the batches of one lane", lanes)
		}
	}
}

// TestLanesSeekResume is TestLoaderSeekResume with lanes: a fresh loader
// seeking to a cursor saved through JSON continues with exactly the batches
// that followed it.
func TestLanesSeekResume(t *testing.T) {
	const total, window = 400, 60
	c := jsonlCorpus(t, randomDocs(7, 11, 50)...)
	tests := []struct {
		name string
		cfg  data.LoaderConfig
	}{
		{"2 lanes, short, shuffled", data.LoaderConfig{SeqLen: 3, Shuffle: true, Seed: 1, Lanes: 2}},
		{"2 lanes, mid, in order", data.LoaderConfig{SeqLen: 13, Lanes: 2}},
		{"5 lanes, mid, shuffled", data.LoaderConfig{SeqLen: 7, Shuffle: true, Seed: 2, Lanes: 5}},
		{"5 lanes, long, shuffled", data.LoaderConfig{SeqLen: 64, Shuffle: true, Seed: 3, Lanes: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, cursors := run(t, newLoader(t, c, tt.cfg), total)
			var midDoc, epochsApart, nextNotZero bool
			for k := 0; k < total; k += 1 + k%7 {
				saved, err := json.Marshal(cursors[k])
				if err != nil {
					t.Fatal(err)
				}
				var cur data.Cursor
				if err := json.Unmarshal(saved, &cur); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(cur, cursors[k]) {
					t.Fatalf("cursor %+v comes back from JSON as %+v", cursors[k], cur)
				}
				if len(cur.Lanes) != tt.cfg.Lanes {
					t.Fatalf("cursor %s has %d lanes, want %d", saved, len(cur.Lanes), tt.cfg.Lanes)
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
				for _, p := range cur.Lanes {
					midDoc = midDoc || p.Offset > 0
					epochsApart = epochsApart || p.Epoch != cur.Lanes[0].Epoch
				}
				nextNotZero = nextNotZero || cur.Next > 0
			}
			if !midDoc || !epochsApart || !nextNotZero {
				t.Errorf("no cursor mid-document (%v), with lanes in different epochs (%v), or with next > 0 (%v); make the run longer",
					midDoc, epochsApart, nextNotZero)
			}
		})
	}
}

// TestLanesMoreThanDocuments asks for more lanes than there are documents:
// one lane per document.
func TestLanesMoreThanDocuments(t *testing.T) {
	c := jsonlCorpus(t, "abcd", "efg", "hi")
	cfg := data.LoaderConfig{SeqLen: 3, Shuffle: true, Seed: 4, Lanes: 10}
	many, cursors := run(t, newLoader(t, c, cfg), 60)
	cfg.Lanes = 3
	three, _ := run(t, newLoader(t, c, cfg), 60)
	if !reflect.DeepEqual(many, three) {
		t.Errorf("lanes 10 over 3 documents differs from lanes 3")
	}
	if n := len(cursors[59].Lanes); n != 3 {
		t.Errorf("cursor has %d lanes, want 3", n)
	}
	if err := newLoader(t, c, cfg).Seek(cursors[59]); err != nil {
		t.Errorf("a lanes-10 cursor in a lanes-3 loader over 3 documents: %v", err)
	}
	cfg.Lanes = 2
	if err := newLoader(t, c, cfg).Seek(cursors[59]); err == nil || !strings.Contains(err.Error(), "lane") {
		t.Errorf("a 3-lane cursor in a 2-lane loader: error %v", err)
	}
}

func TestLanesSeekErrors(t *testing.T) {
	c := jsonlCorpus(t, "abc", "defgh", "ij", "kl", "mnop")
	l := newLoader(t, c, data.LoaderConfig{SeqLen: 4, Lanes: 3})
	good := []data.LaneCursor{{Epoch: 2, Doc: 3, Offset: 1}, {Epoch: 1, Doc: 1, Offset: 4}, {Epoch: 2, Doc: 2, Offset: 0}}
	at := func(next int, lanes ...data.LaneCursor) data.Cursor {
		p := lanes[next]
		return data.Cursor{Epoch: p.Epoch, Doc: p.Doc, Offset: p.Offset, Next: next, Lanes: lanes}
	}
	with := func(j int, p data.LaneCursor) []data.LaneCursor {
		lanes := append([]data.LaneCursor(nil), good...)
		lanes[j] = p
		return lanes
	}
	tests := []struct {
		name string
		cur  data.Cursor
		want []string
	}{
		{"one-lane cursor", data.Cursor{Epoch: 1, Doc: 1}, []string{"cursor has 1 lane", "loader 3"}},
		{"two-lane cursor", at(0, good[:2]...), []string{"cursor has 2 lane", "loader 3"}},
		{"four-lane cursor", at(0, append(good, good[0])...), []string{"cursor has 4 lane", "loader 3"}},
		{"next out of range", data.Cursor{Next: 3, Lanes: good}, []string{"next lane 3"}},
		{"next negative", data.Cursor{Next: -1, Lanes: good}, []string{"next lane -1"}},
		{"top not lane next", data.Cursor{Epoch: 2, Doc: 3, Offset: 1, Next: 1, Lanes: good}, []string{"lane 1"}},
		{"negative epoch", at(1, with(1, data.LaneCursor{Epoch: -1, Doc: 1})...), []string{"lane 1", "negative epoch"}},
		{"doc out of range", at(0, with(2, data.LaneCursor{Doc: 5})...), []string{"lane 2", "out of range"}},
		{"doc of another lane", at(0, with(1, data.LaneCursor{Doc: 2})...), []string{"lane 1", "not lane 1's"}},
		{"negative offset", at(0, with(0, data.LaneCursor{Doc: 3, Offset: -1})...), []string{"lane 0", "negative offset"}},
		{"offset past the end", at(0, with(2, data.LaneCursor{Doc: 2, Offset: 2})...), []string{"lane 2", "offset past the end"}},
	}
	for _, tt := range tests {
		err := l.Seek(tt.cur)
		if err == nil || !strings.HasPrefix(err.Error(), "data: seek") {
			t.Errorf("%s: Seek(%+v) error = %v", tt.name, tt.cur, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tt.name, err, w)
			}
		}
	}
	start := data.Cursor{Next: 0, Lanes: []data.LaneCursor{{Doc: 0}, {Doc: 1}, {Doc: 2}}}
	if c := l.Cursor(); !reflect.DeepEqual(c, start) {
		t.Errorf("failed seeks moved the cursor to %+v", c)
	}
	cur := at(1, good...)
	if err := l.Seek(cur); err != nil {
		t.Fatalf("Seek(%+v): %v", cur, err)
	}
	if c := l.Cursor(); !reflect.DeepEqual(c, cur) {
		t.Errorf("cursor after seek = %+v, want %+v", c, cur)
	}

	one := newLoader(t, c, data.LoaderConfig{SeqLen: 4})
	if err := one.Seek(cur); err == nil || !strings.Contains(err.Error(), "cursor has 3 lane") {
		t.Errorf("a 3-lane cursor in a one-lane loader: error %v", err)
	}
}

func TestLoaderConfigLanes(t *testing.T) {
	c := jsonlCorpus(t, "some text")
	_, err := data.NewLoader(c, data.ByteTokenizer{}, data.LoaderConfig{SeqLen: 4, Lanes: -1})
	if err == nil || !strings.HasPrefix(err.Error(), "data: lanes") || !strings.Contains(err.Error(), "-1") {
		t.Errorf("lanes -1: error %v", err)
	}
	for _, lanes := range []int{0, 1, 2, 1000} {
		if err := (data.LoaderConfig{SeqLen: 4, Lanes: lanes}).Validate(); err != nil {
			t.Errorf("lanes %d: %v", lanes, err)
		}
	}
}
