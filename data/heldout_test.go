package data_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// heldoutSources is a jsonl source of 40 documents "doc 0" ... "doc 39" and a
// passkey source of 10 samples.
func heldoutSources(t *testing.T) []data.SourceConfig {
	t.Helper()
	var sb strings.Builder
	for i := range 40 {
		line, _ := json.Marshal(map[string]string{"text": fmt.Sprintf("doc %d", i)})
		sb.Write(line)
		sb.WriteByte('\n')
	}
	path := writeFile(t, t.TempDir(), "docs.jsonl", sb.String())
	return []data.SourceConfig{
		{Type: "jsonl", Path: path},
		{Type: "passkey", Count: 10, MinLen: 200, MaxLen: 300, Seed: 1},
	}
}

func split(t *testing.T, srcs []data.SourceConfig, heldout int, seed uint64) (train, held []string) {
	t.Helper()
	tc, hc, err := data.OpenSplit(srcs, heldout, seed)
	if err != nil {
		t.Fatal(err)
	}
	train, _ = readAll(t, tc)
	held, _ = readAll(t, hc)
	return train, held
}

func TestOpenSplit(t *testing.T) {
	srcs := heldoutSources(t)
	c, err := data.OpenCorpus(srcs)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := readAll(t, c)
	if len(all) != 50 {
		t.Fatalf("%d documents, want 50", len(all))
	}

	train0, held0 := split(t, srcs, 0, 1)
	if !reflect.DeepEqual(train0, all) || len(held0) != 0 {
		t.Errorf("heldout 0: train has %d documents, held %d; want the whole corpus in order and none", len(train0), len(held0))
	}

	prev := []string{}
	for _, n := range []int{1, 5, 12, 39} {
		train, held := split(t, srcs, n, 1)
		if len(held) != n || len(train) != 50-n {
			t.Fatalf("heldout %d: %d held, %d train", n, len(held), len(train))
		}
		// Disjoint, together the corpus, each in corpus order.
		merged := slices.Concat(train, held)
		slices.SortFunc(merged, func(a, b string) int { return slices.Index(all, a) - slices.Index(all, b) })
		if !reflect.DeepEqual(merged, all) {
			t.Errorf("heldout %d: train and held are not a partition of the corpus", n)
		}
		for _, part := range [][]string{train, held} {
			if !slices.IsSortedFunc(part, func(a, b string) int { return slices.Index(all, a) - slices.Index(all, b) }) {
				t.Errorf("heldout %d: not in corpus order: %q", n, part)
			}
		}
		// Stable: the same again, and holding out more keeps the earlier ones.
		if t2, h2 := split(t, srcs, n, 1); !reflect.DeepEqual(t2, train) || !reflect.DeepEqual(h2, held) {
			t.Errorf("heldout %d: two opens differ", n)
		}
		for _, name := range prev {
			if !slices.Contains(held, name) {
				t.Errorf("heldout %d does not hold out %s, which a smaller heldout did", n, name)
			}
		}
		prev = held
	}

	// Drawn from the whole corpus, by the seed.
	_, held1 := split(t, srcs, 12, 1)
	_, held2 := split(t, srcs, 12, 2)
	if reflect.DeepEqual(held1, held2) {
		t.Errorf("seeds 1 and 2 hold out the same documents %q", held1)
	}
	// Only real documents are held out, and synthetic sources do not change
	// which: a recipe that mixes in other passkey samples holds out the same.
	fewer := slices.Clone(srcs)
	fewer[1].Count, fewer[1].MinLen, fewer[1].MaxLen = 3, 400, 500
	for seed := range uint64(10) {
		_, held := split(t, srcs, 12, seed)
		for _, name := range held {
			if strings.HasPrefix(name, "passkey") {
				t.Errorf("seed %d holds out a synthetic document %s", seed, name)
			}
		}
		if _, h2 := split(t, fewer, 12, seed); !reflect.DeepEqual(h2, held) {
			t.Errorf("seed %d: another passkey source changes the held-out documents: %q vs %q", seed, h2, held)
		}
		if _, h3 := split(t, srcs[:1], 12, seed); !reflect.DeepEqual(h3, held) {
			t.Errorf("seed %d: without the passkey source the held-out documents differ: %q vs %q", seed, h3, held)
		}
	}

	for _, n := range []int{-1, 40, 51} {
		if _, _, err := data.OpenSplit(srcs, n, 1); err == nil || !strings.Contains(err.Error(), "heldout") {
			t.Errorf("heldout %d: error %v, want one about heldout", n, err)
		}
	}
}

// TestHeldoutLoader checks that a loader over the train corpus reads every
// training document and no held-out one.
func TestHeldoutLoader(t *testing.T) {
	train, _, err := data.OpenSplit(heldoutSources(t)[:1], 10, 7)
	if err != nil {
		t.Fatal(err)
	}
	_, want := readAll(t, train)
	b, err := newLoader(t, train, data.LoaderConfig{SeqLen: 1000, Shuffle: true, Seed: 7}).Next()
	if err != nil {
		t.Fatal(err)
	}
	// Documents are packed back to back: "doc 3doc 17doc 5...".
	text := string(data.ByteTokenizer{}.Decode(b.Tokens))
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`doc [0-9]+`).FindAllStringIndex(text, -1) {
		if m[1] < len(text) { // the last one may be cut short
			seen[text[m[0]:m[1]]] = true
		}
	}
	got := slices.Sorted(maps.Keys(seen))
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the loader read %q\nwant the training documents %q", got, want)
	}
}
