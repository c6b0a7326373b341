package tokenizer

import (
	"fmt"
	"iter"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// pattern is a tokenizer.json pattern, {"String": s} or {"Regex": r}. Regexes are
// in Oniguruma's syntax; regexp2 (.NET syntax, with look-ahead) reads the ones met
// so far alike. The three regexes that nearly every byte-level BPE splits with
// (GPT-2's, Llama 3's, Qwen2's) run on a hand-written matcher instead: regexp2
// manages about 2 MB/s on them, and the matcher is checked against it in tests.
type pattern struct {
	lit  string
	re   *regexp2.Regexp
	fast *splitRule
}

// The pre-tokenizer regexes that splitRule implements.
const (
	gpt2Regex   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Regex  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

var fastRules = map[string]*splitRule{
	gpt2Regex:   {},
	llama3Regex: {llama: true, maxDigits: 3},
	qwen2Regex:  {llama: true, maxDigits: 1},
}

func newPattern(p *patternJSON, field string) (*pattern, error) {
	switch {
	case p == nil || p.String == nil && p.Regex == nil:
		return nil, fmt.Errorf("%s: want {\"String\": ...} or {\"Regex\": ...}", field)
	case p.String != nil:
		return &pattern{lit: *p.String}, nil
	}
	return newRegex(*p.Regex, field+".Regex")
}

func newRegex(expr, field string) (*pattern, error) {
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", field, err)
	}
	return &pattern{re: re, fast: fastRules[expr]}, nil
}

// matches yields the byte offsets of the non-overlapping matches in s, left to right.
func (p *pattern) matches(s string) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		switch {
		case p.fast != nil:
			for i := 0; i < len(s); {
				j := p.fast.match(s, i)
				if !yield(i, j) {
					return
				}
				i = j
			}
		case p.re != nil:
			runes := []rune(s)
			at := make([]int, len(runes)+1) // byte offset of each rune
			for k, i := 0, 0; k < len(runes); k++ {
				at[k] = i
				i += utf8.RuneLen(runes[k])
			}
			at[len(runes)] = len(s)
			m, err := p.re.FindRunesMatch(runes)
			for err == nil && m != nil {
				if !yield(at[m.Index], at[m.Index+m.Length]) {
					return
				}
				m, err = p.re.FindNextMatch(m)
			}
		case p.lit != "": // an empty literal matches nothing, as in Hugging Face
			for i := 0; ; {
				k := strings.Index(s[i:], p.lit)
				if k < 0 || !yield(i+k, i+k+len(p.lit)) {
					return
				}
				i += k + len(p.lit)
			}
		}
	}
}

// replace returns s with every match replaced by content.
func (p *pattern) replace(s, content string) string {
	if p.re == nil && p.fast == nil {
		if p.lit == "" {
			return s
		}
		return strings.ReplaceAll(s, p.lit, content)
	}
	var b strings.Builder
	prev := 0
	for start, end := range p.matches(s) {
		b.WriteString(s[prev:start])
		b.WriteString(content)
		prev = end
	}
	b.WriteString(s[prev:])
	return b.String()
}

// splitRule matches one of the regexes above at a position, trying the
// alternatives in order as a backtracking engine does. Every character is a
// letter (\p{L}), a number (\p{N}), white space (\s) or other, and each class
// starts some alternative, so the matches tile the text.
type splitRule struct {
	llama     bool // Llama 3 / Qwen2 (case-insensitive contractions, ...); else GPT-2
	maxDigits int  // \p{N}{1,maxDigits} (llama only)
}

func (r *splitRule) match(s string, i int) int {
	c, w := utf8.DecodeRuneInString(s[i:])
	if c == '\'' {
		if n := contraction(s[i+1:], r.llama); n > 0 {
			return i + 1 + n
		}
	}
	next := rune(-1) // past the end: in no class
	if i+w < len(s) {
		next, _ = utf8.DecodeRuneInString(s[i+w:])
	}
	if !r.llama {
		// ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
		start := i
		if c == ' ' && next >= 0 && !isSpace(next) {
			start, c = i+1, next
		}
		switch {
		case isLetter(c):
			return run(s, start, isLetter)
		case isNumber(c):
			return run(s, start, isNumber)
		case isOther(c):
			return run(s, start, isOther)
		}
		return spaces(s, i)
	}
	switch {
	case isLetter(c): // [^\r\n\p{L}\p{N}]?\p{L}+
		return run(s, i, isLetter)
	case c != '\r' && c != '\n' && !isNumber(c) && isLetter(next):
		return run(s, i+w, isLetter)
	case isNumber(c): // \p{N}{1,maxDigits}
		j := i
		for k := 0; k < r.maxDigits && j < len(s); k++ {
			d, dw := utf8.DecodeRuneInString(s[j:])
			if !isNumber(d) {
				break
			}
			j += dw
		}
		return j
	case c == ' ' && isOther(next), isOther(c): // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
		start := i
		if c == ' ' {
			start++
		}
		j := run(s, start, isOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// \s*[\r\n]+: the white space up to its last line break, if it has one.
	end := run(s, i, isSpace)
	if q := strings.LastIndexAny(s[i:end], "\r\n"); q >= 0 {
		return i + q + 1
	}
	return spaces(s, i)
}

// spaces matches `\s+(?!\S)|\s+` at i: a run of white space, less its last
// character when a non-space follows and the run has more than one.
func spaces(s string, i int) int {
	end := run(s, i, isSpace)
	if end == len(s) {
		return end
	}
	_, lw := utf8.DecodeLastRuneInString(s[:end])
	if end-lw > i {
		return end - lw
	}
	return end
}

// contraction is the length of the contraction ("s", "re", ...) at the start of s,
// ASCII case-insensitive if fold, or 0.
func contraction(s string, fold bool) int {
	lower := func(k int) byte {
		if k >= len(s) {
			return 0
		}
		if c := s[k]; fold && c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return s[k]
	}
	switch c0, c1 := lower(0), lower(1); {
	case c0 == 's' || c0 == 't' || c0 == 'm' || c0 == 'd':
		return 1
	case c0 == 'r' && c1 == 'e', c0 == 'v' && c1 == 'e', c0 == 'l' && c1 == 'l':
		return 2
	}
	return 0
}

// run returns the end of the run of characters of one class that starts at i.
func run(s string, i int, in func(rune) bool) int {
	for i < len(s) {
		c, w := utf8.DecodeRuneInString(s[i:])
		if !in(c) {
			break
		}
		i += w
	}
	return i
}

// The character classes of the regexes: \p{L}, \p{N}, \s (White_Space, the
// same set in Oniguruma, .NET and, as Hugging Face's JavaScript rewrites it,
// JavaScript), and everything else.
func isLetter(c rune) bool {
	if c < utf8.RuneSelf {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
	}
	return unicode.IsLetter(c)
}

func isNumber(c rune) bool {
	if c < utf8.RuneSelf {
		return '0' <= c && c <= '9'
	}
	return unicode.IsNumber(c)
}

func isSpace(c rune) bool { return unicode.IsSpace(c) }

func isOther(c rune) bool { return c >= 0 && !isLetter(c) && !isNumber(c) && !isSpace(c) }
