package tokenizer

import (
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites the text between added tokens before it is split, as a
// tokenizer.json "normalizer" does (Llama 2: Prepend "▁" then Replace " " by
// "▁"; Qwen2: NFC).
type normalizer interface {
	normalize(s string) string
}

const supportedNormalizers = "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Strip, Lowercase"

func newNormalizer(c *component, field string) (normalizer, error) {
	if c == nil {
		return nil, nil
	}
	switch c.Type {
	case "Sequence":
		var seq normSeq
		for i, sub := range c.Normalizers {
			n, err := newNormalizer(sub, fmt.Sprintf("%s.normalizers[%d]", field, i))
			if err != nil {
				return nil, err
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return seq, nil
	case "Prepend":
		if c.Prepend == nil {
			return nil, fmt.Errorf("%s: Prepend lacks \"prepend\"", field)
		}
		return prependNorm(*c.Prepend), nil
	case "Replace":
		p, err := newPattern(c.Pattern, field+".pattern")
		if err != nil {
			return nil, err
		}
		return replaceNorm{p, deref(c.Content)}, nil
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Strip":
		return stripNorm{c.StripLeft, c.StripRight}, nil
	case "Lowercase":
		return lowercaseNorm{}, nil
	}
	return nil, fmt.Errorf("%s: normalizer type %q is not supported (supported: %s)", field, c.Type, supportedNormalizers)
}

type normSeq []normalizer

func (q normSeq) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

type prependNorm string

// An empty text stays empty, as in Hugging Face.
func (p prependNorm) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

type replaceNorm struct {
	p       *pattern
	content string
}

func (r replaceNorm) normalize(s string) string { return r.p.replace(s, r.content) }

type unicodeNorm struct{ form norm.Form }

func (u unicodeNorm) normalize(s string) string { return u.form.String(s) }

type stripNorm struct{ left, right bool }

func (t stripNorm) normalize(s string) string {
	if t.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if t.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

type lowercaseNorm struct{}

// Rust's char::to_lowercase is Go's simple mapping except for U+0130, whose
// lower case is two characters.
func (lowercaseNorm) normalize(s string) string {
	return strings.Map(unicode.ToLower, strings.ReplaceAll(s, "\u0130", "i\u0307"))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
