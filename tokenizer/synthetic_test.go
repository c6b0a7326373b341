package tokenizer

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Small tokenizer.json files built by the tests: a GPT-2-style byte-level BPE and
// two SentencePiece-style ones, with merges learned from Go source so that they
// look like real ones. Ids are shuffled, so that no id order agrees with the
// merges order: the model must rank merges by the list, as Hugging Face does.

// trainMerges learns n merges from words (counts by word, each word a list of
// symbols): the most frequent pair first, ties broken by the pair's spelling.
func trainMerges(words map[string]int, symbols func(string) []string, n int) [][2]string {
	type word struct {
		syms  []string
		count int
	}
	var ws []word
	for _, w := range slices.Sorted(maps.Keys(words)) {
		ws = append(ws, word{symbols(w), words[w]})
	}
	var merges [][2]string
	for range n {
		counts := map[[2]string]int{}
		for _, w := range ws {
			for i := 0; i+1 < len(w.syms); i++ {
				counts[[2]string{w.syms[i], w.syms[i+1]}] += w.count
			}
		}
		best, bestN := [2]string{}, 0
		for p, c := range counts {
			if c > bestN || c == bestN && cmp.Or(strings.Compare(p[0], best[0]), strings.Compare(p[1], best[1])) < 0 {
				best, bestN = p, c
			}
		}
		if bestN < 2 {
			break
		}
		merges = append(merges, best)
		for k := range ws {
			s := ws[k].syms
			var out []string
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == best[0] && s[i+1] == best[1] {
					out = append(out, best[0]+best[1])
					i++
					continue
				}
				out = append(out, s[i])
			}
			ws[k].syms = out
		}
	}
	return merges
}

// corpusWords splits Go source and some prose into words with split, counting them.
func corpusWords(split func(string) []string) map[string]int {
	words := map[string]int{}
	text := "The quick brown fox jumps over the lazy dog. It's what they're doing, isn't it? " +
		"Tokenizers split text into words, then merge characters into tokens.\n"
	for _, f := range goSource()[:12] {
		text += string(f)
	}
	for _, w := range split(text) {
		words[w]++
	}
	return words
}

func chars(s string) []string {
	var out []string
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}

// shuffledIDs gives tokens distinct ids from start on, in a seeded random order.
func shuffledIDs(tokens []string, start int, seed uint64) map[string]int {
	rng := rand.New(rand.NewPCG(seed, 1))
	perm := rng.Perm(len(tokens))
	ids := map[string]int{}
	for i, t := range tokens {
		ids[t] = start + perm[i]
	}
	return ids
}

func addedEntry(id int, content string, special, normalized bool) map[string]any {
	return map[string]any{"id": id, "content": content, "single_word": false, "lstrip": content == "<mask>",
		"rstrip": false, "normalized": normalized, "special": special}
}

func template(single ...string) map[string]any {
	var pieces []any
	special := map[string]any{}
	for _, s := range single {
		if s == "$A" {
			pieces = append(pieces, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}})
			continue
		}
		pieces = append(pieces, map[string]any{"SpecialToken": map[string]any{"id": s, "type_id": 0}})
		special[s] = map[string]any{"id": s, "ids": []int{-1}, "tokens": []string{s}} // ids set by the caller
	}
	return map[string]any{"type": "TemplateProcessing", "single": pieces, "pair": pieces, "special_tokens": special}
}

func setTemplateIDs(tpl map[string]any, ids map[string]int) {
	for name, st := range tpl["special_tokens"].(map[string]any) {
		st.(map[string]any)["ids"] = []int{ids[name]}
	}
}

// gpt2Style writes a byte-level BPE like GPT-2's: the 256 byte characters and
// 400 learned merges, merges written the legacy way ("a b"), ids shuffled.
func gpt2Style(t testing.TB, dir string) string {
	rule := fastRules[gpt2Regex]
	split := func(s string) []string {
		var out []string
		for start, end := range (&pattern{fast: rule}).matches(s) {
			out = append(out, toByteLevel(s[start:end]))
		}
		return out
	}
	merges := trainMerges(corpusWords(split), chars, 400)
	var tokens []string
	for _, r := range byteChar {
		tokens = append(tokens, string(r))
	}
	seen := map[string]bool{}
	var lines []string
	for _, m := range merges {
		if !seen[m[0]+m[1]] {
			tokens = append(tokens, m[0]+m[1])
			seen[m[0]+m[1]] = true
		}
		lines = append(lines, m[0]+" "+m[1])
	}
	vocab := shuffledIDs(tokens, 0, 7)
	n := len(vocab)
	tpl := template("<|endoftext|>", "$A", "<|endoftext|>")
	setTemplateIDs(tpl, map[string]int{"<|endoftext|>": n})
	file := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []any{addedEntry(n, "<|endoftext|>", true, false), addedEntry(n+1, "<mask>", true, false),
			addedEntry(n+2, "fmt.Println", false, true)},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{map[string]any{"type": "ByteLevel", "trim_offsets": false}, tpl}},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": lines},
	}
	return writeJSON(t, dir, "gpt2-style.json", file)
}

// spStyle writes a SentencePiece-style BPE. metaspace: Mistral's newer layout (a
// Metaspace pre-tokenizer and decoder, byte fallback, <s> $A </s>); else Llama
// 2's legacy layout (Prepend and Replace normalizers, <s> $A) without byte
// fallback, so that unknown characters become one fused <unk>.
func spStyle(t testing.TB, dir string, metaspace bool) string {
	split := func(s string) []string {
		var out []string
		for _, w := range strings.Fields(s) {
			out = append(out, "▁"+w)
		}
		return out
	}
	words := corpusWords(split)
	merges := trainMerges(words, chars, 300)
	alphabet := map[string]bool{"▁": true}
	for w := range words {
		for _, c := range chars(w) {
			if utf8.RuneLen([]rune(c)[0]) == 1 { // ASCII only: the rest falls back
				alphabet[c] = true
			}
		}
	}
	tokens := slices.Sorted(maps.Keys(alphabet))
	seen := maps.Clone(alphabet)
	var pairs [][]string
	for _, m := range merges {
		if !seen[m[0]] || !seen[m[1]] {
			continue // learned over a character left out of the alphabet
		}
		if !seen[m[0]+m[1]] {
			tokens = append(tokens, m[0]+m[1])
			seen[m[0]+m[1]] = true
		}
		pairs = append(pairs, []string{m[0], m[1]})
	}
	vocab := shuffledIDs(tokens, 3+256, 11)
	vocab["<unk>"], vocab["<s>"], vocab["</s>"] = 0, 1, 2
	for b := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	added := []any{addedEntry(0, "<unk>", true, false), addedEntry(1, "<s>", true, false), addedEntry(2, "</s>", true, false)}
	file := map[string]any{"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added}
	model := map[string]any{"type": "BPE", "dropout": nil, "unk_token": "<unk>", "continuing_subword_prefix": nil,
		"end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": metaspace, "ignore_merges": false, "vocab": vocab, "merges": pairs}
	file["model"] = model
	if metaspace {
		ms := map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
		file["normalizer"], file["pre_tokenizer"], file["decoder"] = nil, ms, ms
		tpl := template("<s>", "$A", "</s>")
		setTemplateIDs(tpl, vocab)
		file["post_processor"] = tpl
		return writeJSON(t, dir, "sp-metaspace.json", file)
	}
	file["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{
		map[string]any{"type": "Prepend", "prepend": "▁"},
		map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}}}
	file["pre_tokenizer"] = nil
	file["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{
		map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
		map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
		map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0}}}
	tpl := template("<s>", "$A")
	setTemplateIDs(tpl, vocab)
	file["post_processor"] = tpl
	return writeJSON(t, dir, "sp-legacy.json", file)
}

func writeJSON(t testing.TB, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
