package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad files fail Load with an error that names the file and the field.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good, err := json.Marshal(charsTokenizer())
	if err != nil {
		t.Fatal(err)
	}
	// with replaces the value at a dotted path of the chars tokenizer.
	with := func(path string, v any) string {
		var f map[string]any
		if err := json.Unmarshal(good, &f); err != nil {
			t.Fatal(err)
		}
		m := f
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			m = m[k].(map[string]any)
		}
		if v == nil {
			delete(m, keys[len(keys)-1])
		} else {
			m[keys[len(keys)-1]] = v
		}
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	bpe := func(extra string) string {
		return `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]` + extra + `}}`
	}
	for _, c := range []struct {
		name, file string
		want       []string
	}{
		{"truncated", `{"model": {"type": "BPE",` + "\n" + `  "vocab": {"a": 0`, []string{"malformed JSON at line 2, column 18 (byte 43)", "unexpected end"}},
		{"not json", "tokenizer", []string{"malformed JSON at line 1, column 2 (byte 1)"}},
		{"type error", `{"model": {"type": 5}}`, []string{"field model.type", "line 1"}},
		{"WordPiece", with("model.type", "WordPiece"), []string{`model.type "WordPiece" is not supported`, `"BPE"`}},
		{"Unigram", `{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}`, []string{`model.type "Unigram" is not supported`}},
		{"no model", `{"added_tokens": []}`, []string{`no "model"`}},
		{"no vocab", with("model.vocab", nil), []string{`model has no "vocab"`}},
		{"no merges", with("model.merges", nil), []string{`model has no "merges"`}},
		{"vocab list", `{"model": {"type": "BPE", "vocab": [["a", 0]], "merges": []}}`, []string{"model.vocab is a list"}},
		{"vocab id", strings.Replace(bpe(""), `"b": 1`, `"b": "x"`, 1), []string{"model.vocab"}},
		{"merge unknown", with("model.merges", []string{"t h", "q z"}), []string{"model.merges[1]", `"q" "z"`, `the merged token "qz" is not in model.vocab`}},
		{"merge side unknown", strings.Replace(bpe(""), `"a b"`, `"a c"`, 1), []string{"model.merges[0]", `"c" is not in model.vocab`}},
		{"bad merge line", strings.Replace(bpe(""), `"a b"`, `"a b c"`, 1), []string{"model.merges[0]", "not two tokens"}},
		{"merge pair", strings.Replace(bpe(""), `["a b"]`, `[["a"]]`, 1), []string{"model.merges[0]: want two tokens"}},
		{"unk", bpe(`, "unk_token": "<unk>"`), []string{`model.unk_token "<unk>" is not in model.vocab`}},
		{"dropout", bpe(`, "dropout": 0.1`), []string{"model.dropout 0.1 is not supported"}},
		{"sparse ids", strings.Replace(bpe(""), `"ab": 2`, `"ab": 2000000000`, 1), []string{"id 2000000000 is far past the 3 tokens"}},
		{"duplicate ids", strings.Replace(bpe(""), `"ab": 2`, `"ab": 1`, 1), []string{`model.vocab: "ab" and "b" both have id 1`}},
		{"normalizer", with("normalizer", map[string]any{"type": "BertNormalizer"}), []string{`normalizer: normalizer type "BertNormalizer" is not supported`, "NFC"}},
		{"nested normalizer", with("normalizer", map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "Precompiled"}}}),
			[]string{`normalizer.normalizers[1]: normalizer type "Precompiled"`}},
		{"pre-tokenizer", with("pre_tokenizer", map[string]any{"type": "Whitespace"}), []string{`pre_tokenizer: pre-tokenizer type "Whitespace" is not supported`}},
		{"after ByteLevel", with("pre_tokenizer", map[string]any{"type": "Sequence", "pretokenizers": []any{map[string]any{"type": "ByteLevel"}, map[string]any{"type": "Digits"}}}),
			[]string{"pre_tokenizer.pretokenizers[1]: a pre-tokenizer after ByteLevel"}},
		{"regex", with("pre_tokenizer", map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(a"}, "behavior": "Isolated"}),
			[]string{"pre_tokenizer.pattern.Regex"}},
		{"behavior", with("pre_tokenizer", map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "Sideways"}),
			[]string{`pre_tokenizer.behavior: "Sideways" is not one of`}},
		{"no pattern", with("normalizer", map[string]any{"type": "Replace", "content": "x"}), []string{"normalizer.pattern: want"}},
		{"decoder", with("decoder", map[string]any{"type": "WordPiece"}), []string{`decoder: decoder type "WordPiece" is not supported`}},
		{"post", with("post_processor", map[string]any{"type": "TemplateProcessing", "single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}}}),
			[]string{`post_processor.single[0]: "<s>" is not in post_processor.special_tokens`}},
		{"added id", with("added_tokens", []any{map[string]any{"id": -4, "content": "<s>"}}), []string{`added_tokens[0] ("<s>"): id -4 is out of range`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded on %s", c.file)
			}
			for _, w := range append(c.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "tokenizer.json", charsTokenizer())
	for name, cfg := range map[string]string{
		`bos_token "<s>" is not in the vocabulary`:        `{"bos_token": "<s>"}`,
		"add_eos_token is true but there is no eos_token": `{"add_eos_token": true}`,
		"chat_template: want a string or a list":          `{"chat_template": 3}`,
		"eos_token: want a string or {\"content\"":        `{"eos_token": 7}`,
		"malformed JSON at line 1, column 2 (byte 1)":     `{,}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "tokenizer_config.json") {
			t.Errorf("config %s: error %v, want one naming tokenizer_config.json and saying %s", cfg, err, name)
		}
	}
	if _, err := Load(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("Load of a missing path: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("Load of a folder without tokenizer.json: %v", err)
	}
}

// Load never panics, whatever the bytes; what it accepts encodes and decodes.
func FuzzLoad(f *testing.F) {
	good, err := json.Marshal(charsTokenizer(addedFlags(100, "<l>", "lstrip"), addedFlags(101, "tok", "single_word")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte(`{"bos_token": "a", "add_bos_token": true, "chat_template": "x"}`))
	f.Add(good[:len(good)/2], []byte(`{}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]], "byte_fallback": true, "unk_token": "a"},
		"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"Regex": " +"}, "content": "▁"}, {"type": "NFKC"}]},
		"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "Metaspace", "prepend_scheme": "first"}, {"type": "Split", "pattern": {"String": "b"}, "behavior": "MergedWithNext", "invert": true}]},
		"decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace"}, {"type": "Strip", "content": "a", "start": 9, "stop": 9}]},
		"post_processor": {"type": "RobertaProcessing", "cls": ["a", 0], "sep": ["b", 1]}}`), []byte(`{"eos_token": {"content": "b"}}`))
	f.Add([]byte(`{"model": {"vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`), []byte(`{"pad_token": null}`))
	text := []byte("the  <l>tok a\xffb 12 ▁ab\n")
	f.Fuzz(func(t *testing.T, file, cfg []byte) {
		var configs []namedFile
		if len(cfg) > 0 {
			configs = append(configs, namedFile{"fuzz_config.json", cfg})
		}
		tok, err := build(namedFile{"fuzz.json", file}, configs...)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz") {
				t.Errorf("error without the file name: %v", err)
			}
			return
		}
		ids := tok.EncodeSpecial(text)
		tok.Decode(append(ids, -1, int32(tok.VocabSize())))
		for _, id := range tok.Encode(text) {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("Encode gave id %d outside [0, %d)", id, tok.VocabSize())
			}
		}
	})
}
