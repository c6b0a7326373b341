package tokenizer

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// The strings that the reference test encodes: deterministic (a fixed seed, and
// Go source from the toolchain that runs the test), varied where tokenizers
// differ. Left out: characters newer than Unicode 15.0, which Go's tables lack
// and node's ICU may know.

// goroot is the toolchain's source tree.
func goroot() string {
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return runtime.GOROOT()
}

// goSource returns the Go files of a few standard packages, in a fixed order.
func goSource() [][]byte {
	var files [][]byte
	for _, pkg := range []string{"strings", "fmt", "unicode/utf8", "encoding/json", "sort"} {
		names, _ := filepath.Glob(filepath.Join(goroot(), "src", pkg, "*.go"))
		slices.Sort(names)
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil {
				files = append(files, b)
			}
		}
	}
	return files
}

// Hand-picked strings: the cases tokenizers are known to get wrong.
var curatedTexts = []string{
	"", " ", "  ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t\t\tx", "a  b", "a   b", "a\u00a0b", "a\u3000b",
	"Hello world", " Hello world", "Hello  world ", "hello\nworld\n", "x\r\ny", "\n    return nil\n",
	"I'm", "I'M", "you're", "YOU'RE", "we've", "WE'VE", "she'll", "SHE'LL", "he'd", "HE'D", "it's", "IT'S",
	"don't", "DON'T", "Don'T", "'s", "'S", "'re", "'Re", "'ll", "'LL", "'d'", "''s", "rock'n'roll", "'ſ", "’s",
	"12345678", "3.14159", "1,000,000", "٣٤٥", "１２３", "x²+y³", "½ ¾", "Ⅻ", "0x1F", "1e-9", "v1.27.3",
	"中文分词测试", "日本語のテキスト", "한국어 텍스트", "Ελληνικά", "Русский текст", "עברית", "العربية", "हिन्दी", "ภาษาไทย",
	"😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "a😀b", " 😀", "❤️", "✓ ✗",
	"e\u0301", "é", "n\u0303o", "Å", "A\u030a", "ﬁ", "x\u0308\u0301", "\u0301start",
	"<|begin_of_text|>", "<|begin_of_text|>Hello", "Hi<|eot_id|>", "<|begin_of_text|><|begin_of_text|>",
	" <|end_of_text|> ", "<|begin_of_text", "begin_of_text|>", "<|im_start|>user\nhi<|im_end|>",
	"<s>", "</s>", "<unk>", "<s>Hello</s>", "a<s>b", " <s> ", "<|endoftext|>", "x<|endoftext|>y", "<mask>", "a <mask> b",
	"▁", "▁▁x", "a▁b", "Ġ", "Ċ", "<0x41>", "<0xFF>", "\ufffd", "\x00", "\x7f", "\u200b", "\u200d", "\u2028",
	"\xff", "\xc3", "\xc3(", "\xe2\x82", "\xe2\x82(", "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\x80", "a\xffb\xfe",
	"\xf4\x90\x80\x80", "\x80\x80", "ok\xe4\xbd", "<|begin_of_text|>\xff",
	"func main() {\n\tfmt.Println(\"hi\")\n}\n", "if x != nil && y <= 0 {", "// comment: TODO(x)",
	"http://example.com/path?q=1&r=2", "user@example.com", "#!/bin/sh", "$HOME", "C:\\Windows",
	"CamelCaseIdentifier", "snake_case_name", "ALLCAPS", "MiXeD", "x = y+z*2", "a...b", "!!!", "???",
}

// Pieces for the random mixes: letters of several scripts, digits, punctuation,
// white space of every kind a regex treats apart, and tokens' own spellings.
var mixPieces = []string{
	"a", "e", "s", "t", "re", "ll", "A", "S", "T", "RE", "LL", "the", "The", "THE", "ing", "tion", "foo", "Bar",
	"0", "1", "7", "42", "999", "2024", "٣", "１", "²",
	".", ",", ";", ":", "!", "?", "'", "\"", "(", ")", "{", "}", "[", "]", "<", ">", "|", "/", "\\", "-", "_", "=", "+", "*", "&", "%", "$", "#", "@", "~", "`", "^",
	" ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u3000", "\u2003", "\v", "\f",
	"中", "文", "日本", "한", "é", "e\u0301", "ß", "ø", "Ж", "λ", "ع", "ह", "😀", "👍🏽", "🇫🇷", "\u200d",
	"▁", "Ġ", "<0x41>", "\ufffd", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|endoftext|>", "<|im_start|>", "<mask>",
}

var invalidBytes = []string{"\xff", "\xfe", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\xaf", "\x80"}

// referenceTexts returns at least 2,000 strings as bytes, some of them not UTF-8.
func referenceTexts() [][]byte {
	rng := rand.New(rand.NewPCG(17, 2026))
	var out [][]byte
	for _, s := range curatedTexts {
		out = append(out, []byte(s))
	}
	// Slices of Go source, of every length up to a few kilobytes.
	src := goSource()
	for i := 0; i < 700 && len(src) > 0; i++ {
		f := src[rng.IntN(len(src))]
		n := 1 + rng.IntN(min(len(f), []int{16, 64, 400, 3000}[i%4]))
		at := rng.IntN(len(f) - n + 1)
		out = append(out, slices.Clone(f[at:at+n])) // may cut a character: fine
	}
	// Random mixes of the pieces above, and now and then an invalid byte.
	for range 1100 {
		var b strings.Builder
		for range 1 + rng.IntN(24) {
			if rng.IntN(40) == 0 {
				b.WriteString(invalidBytes[rng.IntN(len(invalidBytes))])
				continue
			}
			b.WriteString(mixPieces[rng.IntN(len(mixPieces))])
		}
		out = append(out, []byte(b.String()))
	}
	// White space runs between words, the hardest part of the split regexes.
	ws := []string{" ", "\t", "\n", "\r\n", "\u00a0", "\u3000"}
	for range 300 {
		var b strings.Builder
		for range 1 + rng.IntN(6) {
			for range rng.IntN(5) {
				b.WriteString(ws[rng.IntN(len(ws))])
			}
			b.WriteString([]string{"x", "Go", "42", "!", "中文", "'s", "é"}[rng.IntN(7)])
		}
		out = append(out, []byte(b.String()))
	}
	return out
}
