package data_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// mixedSources is an sft source of 12 conversations of random lengths (both
// record forms), a passkey source of 8 samples and a jsonl source.
func mixedSources(t *testing.T) []data.SourceConfig {
	t.Helper()
	words := randomDocs(9, 36, 40)
	var sb strings.Builder
	for i := range 12 {
		var rec any = map[string]string{"prompt": words[3*i], "response": words[3*i+1]}
		if i%3 == 0 {
			rec = map[string]any{"messages": []map[string]string{
				{"role": "system", "content": words[3*i+2]},
				{"role": "user", "content": words[3*i]},
				{"role": "assistant", "content": words[3*i+1]},
			}}
		}
		line, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(line)
		sb.WriteByte('\n')
	}
	dir := t.TempDir()
	var plain strings.Builder
	for _, d := range randomDocs(10, 6, 30) {
		line, _ := json.Marshal(map[string]string{"text": d})
		plain.Write(line)
		plain.WriteByte('\n')
	}
	return []data.SourceConfig{
		{Type: "sft", Path: writeFile(t, dir, "chat.jsonl", sb.String())},
		{Type: "passkey", Count: 8, MinLen: data.PasskeyMinLen, MaxLen: 250, Seed: 5},
		{Type: "jsonl", Path: writeFile(t, dir, "docs.jsonl", plain.String())},
	}
}

// TestSyntheticSeekResume is TestLoaderSeekResume over sft and passkey
// documents: with loss masks in the lane caches and generated documents, a
// fresh loader seeking to a saved cursor still produces exactly the batches
// that followed, masks included.
func TestSyntheticSeekResume(t *testing.T) {
	const total, window = 240, 40
	srcs := mixedSources(t)
	tests := []struct {
		name    string
		heldout int
		cfg     data.LoaderConfig
	}{
		{"short, shuffled", 0, data.LoaderConfig{SeqLen: 17, Shuffle: true, Seed: 1}},
		{"mid, shuffled, 3 lanes", 0, data.LoaderConfig{SeqLen: 37, Shuffle: true, Seed: 2, Lanes: 3}},
		{"long, in order, held out", 4, data.LoaderConfig{SeqLen: 128}},
		{"long, shuffled, 4 lanes, held out", 3, data.LoaderConfig{SeqLen: 96, Shuffle: true, Seed: 4, Lanes: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := func() *data.Loader { // a fresh corpus each time, as a resumed run opens
				train, _, err := data.OpenSplit(srcs, tt.heldout, 11)
				if err != nil {
					t.Fatal(err)
				}
				return newLoader(t, train, tt.cfg)
			}
			want, cursors := run(t, open(), total)
			var masked, weighted, midDoc, laterEpoch bool
			for _, b := range want {
				for i, w := range b.Weight {
					masked = masked || w == 0 && i+1 < len(b.Doc) && b.Doc[i] == b.Doc[i+1]
					weighted = weighted || w == 1
				}
			}
			if !masked || !weighted {
				t.Fatalf("the run has no target masked inside a document (%v) or no weighted one (%v)", masked, weighted)
			}
			for k := 0; k < total; k += 1 + k%7 {
				saved, err := json.Marshal(cursors[k])
				if err != nil {
					t.Fatal(err)
				}
				var cur data.Cursor
				if err := json.Unmarshal(saved, &cur); err != nil {
					t.Fatal(err)
				}
				l := open()
				if err := l.Seek(cur); err != nil {
					t.Fatalf("seek %s: %v", saved, err)
				}
				end := min(k+window, total)
				if got, _ := run(t, l, end-k); !reflect.DeepEqual(got, want[k:end]) {
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

// TestSyntheticWeights checks the loss mask per source type (in a passkey or
// jsonl document every byte counts, in an sft document exactly the response
// bytes do) and that the loader's weights follow the masks over a long run:
// a target is weighted when it counts and no document starts at it.
func TestSyntheticWeights(t *testing.T) {
	c, err := data.OpenCorpus(mixedSources(t))
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte // one epoch of documents, in corpus order
	var counts []bool // per byte of stream: the loss counts it
	var starts []bool // per byte of stream: a document starts there
	for i := range c.Len() {
		spans, err := c.ReadSpans(i)
		if err != nil {
			t.Fatal(err)
		}
		_, loss := data.EncodeSpans(data.ByteTokenizer{}, spans)
		counted := 0
		for _, l := range loss {
			if l {
				counted++
			}
		}
		name := c.Doc(i).Name
		switch text, _ := c.Read(i); {
		case strings.HasPrefix(name, "passkey") || strings.Contains(name, "docs.jsonl"):
			if counted != len(text) {
				t.Errorf("%s: the loss counts %d of %d bytes, want all", name, counted, len(text))
			}
		default: // sft: the response and its newline
			last := strings.LastIndex(string(text), "### Assistant:\n") + len("### Assistant:\n")
			if counted != len(text)-last || !loss[len(loss)-1] || loss[last-1] {
				t.Errorf("%s: the loss counts %d bytes, want the %d of the response %q", name, counted, len(text)-last, text[last:])
			}
		}
		text, _ := c.Read(i)
		stream, counts = append(stream, text...), append(counts, loss...)
		starts = append(starts, true)
		starts = append(starts, make([]bool, len(text)-1)...)
	}

	const L, n = 13, 600 // n*L spans more than one epoch
	l := newLoader(t, c, data.LoaderConfig{SeqLen: L})
	for k := range n {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		for i := range L {
			at := (k*L + i + 1) % len(stream) // the target's place in the stream
			want := float32(0)
			if counts[at] && !starts[at] {
				want = 1
			}
			if b.Targets[i] != int32(stream[at]) || b.Weight[i] != want {
				t.Fatalf("batch %d, position %d: target %q weight %v, want %q %v", k, i, rune(b.Targets[i]), b.Weight[i], stream[at], want)
			}
		}
	}
	if n*L < 2*len(stream) {
		t.Errorf("the run (%d tokens) does not cover two epochs (%d)", n*L, 2*len(stream))
	}
}
