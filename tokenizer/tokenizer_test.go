package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// charsTokenizer is a small tokenizer.json: printable ASCII, one id each (id =
// byte - 32), merges "t h", "th e", "i n", and the added tokens given.
func charsTokenizer(added ...map[string]any) map[string]any {
	vocab := map[string]int{}
	for c := 32; c < 127; c++ {
		vocab[string(rune(c))] = c - 32
	}
	vocab["th"], vocab["the"], vocab["in"] = 95, 96, 97
	return map[string]any{
		"added_tokens": added,
		"normalizer":   nil, "pre_tokenizer": nil, "post_processor": nil,
		"decoder": map[string]any{"type": "Fuse"},
		"model":   map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{"t h", "th e", "i n"}},
	}
}

func addedFlags(id int, content string, flags ...string) map[string]any {
	a := map[string]any{"id": id, "content": content, "special": true, "normalized": false}
	for _, f := range flags {
		a[f] = true
	}
	return a
}

func mustBuild(t *testing.T, file map[string]any) *Tokenizer {
	t.Helper()
	b, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := build(namedFile{"test.json", b})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func ids(s string) []int32 { // the chars tokenizer's ids of s, one per byte
	var out []int32
	for i := 0; i < len(s); i++ {
		out = append(out, int32(s[i])-32)
	}
	return out
}

// Added tokens with Hugging Face's (Rust) flags: lstrip and rstrip take the white
// space beside the token, single_word skips a match that touches a word.
func TestAddedTokenFlags(t *testing.T) {
	tok := mustBuild(t, charsTokenizer(
		addedFlags(100, "<l>", "lstrip"), addedFlags(101, "<r>", "rstrip"),
		addedFlags(102, "tok", "single_word"), addedFlags(103, "<x>"), addedFlags(104, "<x>>")))
	cat := func(parts ...[]int32) []int32 { return slices.Concat(parts...) }
	for _, c := range []struct {
		text string
		want []int32
	}{
		{"a  <l>b", cat(ids("a"), []int32{100}, ids("b"))},
		{"a <r>  b", cat(ids("a "), []int32{101}, ids("b"))},
		{"<r> <l>", []int32{101, 100}},
		{"a tok b", cat(ids("a "), []int32{102}, ids(" b"))},
		{"atok b", ids("atok b")}, // a word character before it
		{"tok_ b", ids("tok_ b")}, // "_" is a word character
		{"tok, b", cat([]int32{102}, ids(", b"))},
		{"<x>>", []int32{104}}, // the longest match
		{"<<x>", cat(ids("<"), []int32{103})},
		{"the thin", []int32{96, 0, 95, 97}},
	} {
		if got := tok.Encode([]byte(c.text)); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}

func TestDecodeUnknownIDs(t *testing.T) {
	tok := mustBuild(t, charsTokenizer())
	if n := tok.VocabSize(); n != 98 {
		t.Fatalf("VocabSize = %d, want 98", n)
	}
	got := string(tok.Decode([]int32{-1, 33, 98, 1 << 30, 96}))
	if want := "\uFFFDA\uFFFD\uFFFDthe"; got != want {
		t.Errorf("Decode = %q, want %q", got, want)
	}
	if got := tok.Decode(nil); len(got) != 0 {
		t.Errorf("Decode(nil) = %q", got)
	}
	if got := tok.Encode(nil); got == nil || len(got) != 0 {
		t.Errorf("Encode(nil) = %#v, want an empty list", got)
	}
}

// Ill-formed UTF-8 becomes one U+FFFD per maximal subpart, as in every Hugging
// Face front end (JavaScript's TextDecoder, Python's decode, Rust's from_utf8_lossy).
func TestUTF8Repair(t *testing.T) {
	for in, want := range map[string]string{
		"ok":               "ok",
		"\xff":             "\uFFFD",
		"\xe2\x82(":        "\uFFFD(",
		"\xf0\x9f\x98":     "\uFFFD",
		"\xf0\x9f\x98\x80": "😀",
		"\xed\xa0\x80":     "\uFFFD\uFFFD\uFFFD", // a surrogate
		"\xc0\x80":         "\uFFFD\uFFFD",       // overlong
		"\xf4\x90\x80\x80": "\uFFFD\uFFFD\uFFFD\uFFFD",
		"a\xe4\xbd":        "a\uFFFD",
		"\ufffd":           "\ufffd",
	} {
		if got := validString([]byte(in)); got != want {
			t.Errorf("validString(%q) = %q, want %q", in, got, want)
		}
	}
}

// The hand-written matcher of the three common pre-tokenizer regexes must match
// exactly what regexp2 finds with the regexes themselves.
func TestSplitRulesMatchRegexp2(t *testing.T) {
	texts := []string{}
	for _, b := range referenceTexts() {
		texts = append(texts, validString(b))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "Z", "é", "中", "5", "٣", "²", "'", "s", "S", "t", "re", "LL", "d", " ", " ", "\t", "\n",
		"\r", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff", ".", "!", "_", "😀", "\u0301", "\x00", "ſ", "K"}
	for range 5000 {
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	for expr := range fastRules {
		fast, err := newRegex(expr, "test")
		if err != nil {
			t.Fatal(err)
		}
		slow := &pattern{re: fast.re}
		bad := 0
		for _, s := range texts {
			var a, b [][2]int
			for i, j := range fast.matches(s) {
				a = append(a, [2]int{i, j})
			}
			for i, j := range slow.matches(s) {
				b = append(b, [2]int{i, j})
			}
			if !slices.Equal(a, b) {
				if bad++; bad <= 5 {
					t.Errorf("%s on %q:\n fast %v\n  re2 %v", expr, s, a, b)
				}
			}
		}
		t.Logf("%d strings, %d mismatches: %s", len(texts), bad, expr)
	}
}

func TestConcurrentUse(t *testing.T) {
	tok, err := Load(gpt2Style(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	texts := referenceTexts()[:400]
	want := make([][]int32, len(texts))
	for i, x := range texts {
		want[i] = tok.Encode(x)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range texts {
				i := (k + 50*g) % len(texts)
				if got := tok.Encode(texts[i]); !slices.Equal(got, want[i]) {
					t.Errorf("goroutine %d: Encode(%q) = %v, want %v", g, texts[i], got, want[i])
				}
				tok.Decode(want[i])
			}
		})
	}
	wg.Wait()
}

// tokenizer_config.json: special token names (plain or AddedToken objects),
// add_bos_token/add_eos_token and the chat template (a string or a list).
func TestModelFolderConfig(t *testing.T) {
	dir := t.TempDir()
	sp := spStyle(t, dir, false)
	data, err := os.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Join(dir, "model")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	plain, err := Load(sp)
	if err != nil {
		t.Fatal(err)
	}
	if bos, ok := plain.BOS(); !ok || bos != 1 { // from the post-processor's <s> $A
		t.Errorf("BOS() without a config = %d, %v; want 1, true", bos, ok)
	}
	writeJSON(t, folder, "tokenizer_config.json", map[string]any{
		"bos_token": map[string]any{"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "pad_token": nil,
		"add_bos_token": false, "add_eos_token": true,
		"chat_template": []any{map[string]any{"name": "tool_use", "template": "T"}, map[string]any{"name": "default", "template": "D"}},
	})
	writeJSON(t, folder, "special_tokens_map.json", map[string]any{"pad_token": "</s>"}) // takes precedence
	tok, err := Load(folder)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name() != folder || tok.ChatTemplate() != "D" {
		t.Errorf("Name, ChatTemplate = %q, %q", tok.Name(), tok.ChatTemplate())
	}
	bos, okB := tok.BOS()
	eos, okE := tok.EOS()
	pad, okP := tok.Pad()
	if bos != 1 || eos != 2 || pad != 2 || !okB || !okE || !okP {
		t.Errorf("BOS, EOS, Pad = %d %v, %d %v, %d %v", bos, okB, eos, okE, pad, okP)
	}
	text := []byte("the answer")
	if got, want := tok.EncodeSpecial(text), append(plain.Encode(text), 2); !slices.Equal(got, want) {
		t.Errorf("EncodeSpecial with add_bos_token false, add_eos_token true = %v, want %v", got, want)
	}
	if pre, suf := tok.Affixes(); len(pre) != 0 || !slices.Equal(suf, []int32{2}) {
		t.Errorf("Affixes = %v, %v; want [], [2]", pre, suf)
	}
	if id, ok := tok.ID("</s>"); !ok || id != 2 {
		t.Errorf("ID(</s>) = %d, %v", id, ok)
	}
	if s, ok := tok.Token(2); !ok || s != "</s>" || !tok.IsSpecial(2) {
		t.Errorf("Token(2) = %q, %v", s, ok)
	}
}
