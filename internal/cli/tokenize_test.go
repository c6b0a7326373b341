package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyTokenizer writes a small SentencePiece-like tokenizer.json: <s> and </s>,
// the 256 byte tokens <0x00>..<0xFF> (ids 2..257), printable ASCII (258..352),
// the merges "h e" (353) and "l l" (354), and <s> before the text.
func tinyTokenizer(t *testing.T, dir string) string {
	t.Helper()
	vocab := map[string]int{"<s>": 0, "</s>": 1, "he": 353, "ll": 354}
	for b := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 2 + b
	}
	for c := 32; c < 127; c++ {
		vocab[string(rune(c))] = 258 + c - 32
	}
	special := func(id int, s string) map[string]any {
		return map[string]any{"id": id, "content": s, "special": true, "normalized": false}
	}
	file := map[string]any{
		"added_tokens": []any{special(0, "<s>"), special(1, "</s>")},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{0}, "tokens": []string{"<s>"}}}},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"}}},
		"model":   map[string]any{"type": "BPE", "byte_fallback": true, "vocab": vocab, "merges": []string{"h e", "l l"}},
	}
	b, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	return write(t, dir, "tokenizer.json", string(b))
}

// runStdin runs torus in-process with stdin reading input.
func runStdin(t *testing.T, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(input); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	saved := os.Stdin
	os.Stdin = f // cobra reads os.Stdin when the command asks for its input
	defer func() { os.Stdin = saved }()
	return run(args...)
}

func TestTokenize(t *testing.T) {
	dir := t.TempDir()
	file := tinyTokenizer(t, dir)
	for _, c := range []struct {
		input string
		args  []string
		want  string
	}{
		{"hé", []string{"byte"}, "[104,195,169]\n"},
		{"", []string{"byte"}, "[]\n"},
		{"[104, 195, 169]", []string{"byte", "--decode"}, "hé"},
		{"hello", []string{file}, "[353,354,337]\n"},
		{"hello", []string{dir, "--special"}, "[0,353,354,337]\n"}, // the model folder
		{"hé<s>", []string{file}, "[330,197,171,0]\n"},
		{"[0, 353, 354, 337, 197, 171]", []string{file, "--decode"}, "<s>helloé"},
	} {
		args := append([]string{"tokenize"}, c.args...)
		code, out, errOut := runStdin(t, c.input, args...)
		if code != 0 || out != c.want {
			t.Errorf("torus %s < %q: exit %d, stdout %q, stderr %q; want %q", strings.Join(args, " "), c.input, code, out, errOut, c.want)
		}
	}
}

func TestTokenizeErrors(t *testing.T) {
	dir := t.TempDir()
	file := tinyTokenizer(t, dir)
	for _, c := range []struct {
		input string
		args  []string
		want  []string
	}{
		{"[1, 2", []string{file, "--decode"}, []string{"stdin is not JSON", "at byte 4"}},
		{`{"ids": [1]}`, []string{file, "--decode"}, []string{"not a JSON array of integer ids", "object"}},
		{"[1, 2.5]", []string{file, "--decode"}, []string{"not a JSON array of integer ids"}},
		{"[1, 355]", []string{file, "--decode"}, []string{"id 355", "index 1", "vocabulary of 355 tokens"}},
		{"[-1]", []string{"byte", "--decode"}, []string{"id -1", "vocabulary of 256 tokens"}},
		{"[256]", []string{"byte", "--decode"}, []string{"id 256", "vocabulary of 256 tokens"}},
		{"x", []string{filepath.Join(dir, "absent.json")}, []string{"tokenize", "absent.json"}},
		{"x", []string{write(t, dir, "bad.json", `{"model": {"type": "WordPiece"}}`)}, []string{"bad.json", `model.type "WordPiece" is not supported`}},
		{"x", []string{file, "--special", "--decode"}, []string{"special", "decode"}},
		{"x", []string{}, []string{"accepts 1 arg"}},
	} {
		args := append([]string{"tokenize"}, c.args...)
		code, out, errOut := runStdin(t, c.input, args...)
		if code == 0 {
			t.Errorf("torus %s < %q: exit 0, stdout %q; want a failure", strings.Join(args, " "), c.input, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("torus %s < %q: stderr %q lacks %q", strings.Join(args, " "), c.input, errOut, w)
			}
		}
	}
}
