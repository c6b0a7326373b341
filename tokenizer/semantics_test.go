package tokenizer

import (
	"slices"
	"testing"
)

// Behaviors of Hugging Face's Rust library that its JavaScript port does not
// share, so the reference test cannot check them: each case is taken from the
// Rust sources or their tests.

// Split's behaviors, as tokenizers/src/pre_tokenizers/split.rs tests them.
func TestSplitBehaviors(t *testing.T) {
	re, err := newRegex(`\w+|[^\w\s]+`, "test")
	if err != nil {
		t.Fatal(err)
	}
	for how, want := range map[behavior][]string{
		removed:            {"How", "are", "you", "doing", "?"},
		isolated:           {"How", " ", "are", " ", "you", " ", "doing", "?"},
		mergedWithPrevious: {"How ", "are ", "you ", "doing", "?"},
		mergedWithNext:     {"How", " are", " you", " doing", "?"},
		contiguous:         {"How", " ", "are", " ", "you", " ", "doing?"},
	} {
		var got []string
		splitPre{re.matches, how, true}.split(piece{s: "How are you doing?"}, func(p piece) { got = append(got, p.s) })
		if !slices.Equal(got, want) {
			t.Errorf("behavior %d: got %q, want %q", how, got, want)
		}
	}
}

// Metaspace with split (metaspace.rs, multiple_spaces), and prepend_scheme
// "first", which prepends only at the start of the input.
func TestMetaspace(t *testing.T) {
	split := func(m metaspace, p piece) (got []string) {
		m.split(p, func(p piece) { got = append(got, p.s) })
		return got
	}
	if got, want := split(metaspace{rep: "▁", prepend: "always", cut: true}, piece{"Hey   friend!", false}),
		[]string{"▁Hey", "▁", "▁", "▁friend!"}; !slices.Equal(got, want) {
		t.Errorf("split = %q, want %q", got, want)
	}
	first := metaspace{rep: "▁", prepend: "first"}
	if got := split(first, piece{"how are", false}); !slices.Equal(got, []string{"how▁are"}) {
		t.Errorf("first, not at the start: %q", got)
	}
	if got := split(first, piece{"how are", true}); !slices.Equal(got, []string{"▁how▁are"}) {
		t.Errorf("first, at the start: %q", got)
	}
	// The decoder drops every "▁" of the first token (the JavaScript port only one space).
	if got := (metaspaceDec{'▁', true}).decode([]string{"▁▁a", "▁b"}); !slices.Equal(got, []string{"a", " b"}) {
		t.Errorf("Metaspace decoder: %q", got)
	}
}

// ByteFallback turns a run of byte tokens that is not UTF-8 into one U+FFFD
// per byte (byte_fallback.rs); the JavaScript port decodes it with TextDecoder.
func TestByteFallbackDecoder(t *testing.T) {
	got := byteFallbackDec{}.decode([]string{"<0xE4>", "<0xBD>", "a", "<0xC3>", "<0xA9>", "<0xZZ>"})
	if want := []string{"\uFFFD", "\uFFFD", "a", "é", "<0xZZ>"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// An unknown character waits as a fused <unk> while byte-fallback characters
// pass it (model.rs, merge_word): Rust puts the <unk> after them.
func TestPendingUnk(t *testing.T) {
	tok := mustBuild(t, map[string]any{
		"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
			"vocab": map[string]int{"<unk>": 0, "a": 1, "<0xC3>": 2, "<0xA9>": 3}, "merges": []string{}},
	})
	if got, want := tok.Encode([]byte("😀é😀a😀")), []int32{2, 3, 0, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// A normalized added token decodes to its normalized form (added_vocabulary.rs,
// simple_id_to_token); the JavaScript port gives the content as written.
func TestNormalizedAddedToken(t *testing.T) {
	file := charsTokenizer(map[string]any{"id": 100, "content": "ab", "special": false, "normalized": true})
	file["normalizer"] = map[string]any{"type": "Prepend", "prepend": "x"}
	tok := mustBuild(t, file)
	// "ab" normalizes to "xab"; "zab" to "xzab", which holds no "xab".
	if got, want := tok.Encode([]byte("ab")), []int32{100}; !slices.Equal(got, want) {
		t.Errorf("Encode(ab) = %v, want %v", got, want)
	}
	if got, want := tok.Encode([]byte("zab")), ids("xzab"); !slices.Equal(got, want) {
		t.Errorf("Encode(zab) = %v, want %v", got, want)
	}
	if got := string(tok.Decode([]int32{100})); got != "xab" {
		t.Errorf("Decode = %q, want the normalized form xab", got)
	}
}
