package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoder turns token strings back into text, as a tokenizer.json "decoder"
// does: each stage maps a list of strings to another, and the last list is
// joined.
type decoder interface {
	decode(toks []string) []string
}

const supportedDecoders = "Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace"

func newDecoder(c *component, field string) (decoder, error) {
	if c == nil {
		return nil, nil
	}
	switch c.Type {
	case "Sequence":
		var seq decSeq
		for i, sub := range c.Decoders {
			d, err := newDecoder(sub, fmt.Sprintf("%s.decoders[%d]", field, i))
			if err != nil {
				return nil, err
			}
			if d != nil {
				seq = append(seq, d)
			}
		}
		return seq, nil
	case "ByteLevel":
		return byteLevelDec{}, nil
	case "ByteFallback":
		return byteFallbackDec{}, nil
	case "Fuse":
		return fuseDec{}, nil
	case "Strip":
		content := deref(c.Content)
		if utf8.RuneCountInString(content) != 1 {
			return nil, fmt.Errorf("%s.content: want one character, have %q", field, content)
		}
		r, _ := utf8.DecodeRuneInString(content)
		return stripDec{r, max(c.Start, 0), max(c.Stop, 0)}, nil
	case "Replace":
		p, err := newPattern(c.Pattern, field+".pattern")
		if err != nil {
			return nil, err
		}
		return replaceDec{p, deref(c.Content)}, nil
	case "Metaspace":
		m, _, err := newMetaspace(c, field)
		if err != nil {
			return nil, err
		}
		ms := m.(metaspace)
		r, _ := utf8.DecodeRuneInString(ms.rep)
		return metaspaceDec{r, ms.prepend != "never"}, nil
	}
	return nil, fmt.Errorf("%s: decoder type %q is not supported (supported: %s)", field, c.Type, supportedDecoders)
}

type decSeq []decoder

func (q decSeq) decode(toks []string) []string {
	for _, d := range q {
		toks = d.decode(toks)
	}
	return toks
}

// byteLevelDec maps each token's characters back to bytes (a token with a
// character outside the alphabet gives its own UTF-8) and decodes all the bytes
// at once, so that a character split over tokens comes back whole.
type byteLevelDec struct{}

func (byteLevelDec) decode(toks []string) []string {
	var b []byte
	for _, t := range toks {
		raw, _ := byteLevelBytes(t)
		b = append(b, raw...)
	}
	return []string{string(appendValidUTF8(nil, b))}
}

// byteFallbackDec turns runs of <0xNN> tokens into their bytes. A run that is
// not valid UTF-8 gives one U+FFFD per byte, as in Hugging Face's Rust decoder
// (its JavaScript port replaces per maximal subpart instead).
type byteFallbackDec struct{}

func (byteFallbackDec) decode(toks []string) []string {
	var out []string
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range toks {
		if b, ok := byteToken(t); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// byteToken reads a "<0xNN>" token.
func byteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	var b byte
	for _, c := range t[3:5] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = byte(c - '0')
		case c >= 'a' && c <= 'f':
			d = byte(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			d = byte(c - 'A' + 10)
		default:
			return 0, false
		}
		b = b<<4 | d
	}
	return b, true
}

type fuseDec struct{}

func (fuseDec) decode(toks []string) []string { return []string{strings.Join(toks, "")} }

// stripDec removes up to start copies of content from the left of each token
// and up to stop from the right.
type stripDec struct {
	content     rune
	start, stop int
}

func (d stripDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		r := []rune(t)
		lo, hi := 0, len(r)
		for lo < d.start && lo < len(r) && r[lo] == d.content {
			lo++
		}
		for k := 0; k < d.stop && hi > lo && r[hi-1] == d.content; k++ {
			hi--
		}
		out[i] = string(r[lo:hi])
	}
	return out
}

type replaceDec struct {
	p       *pattern
	content string
}

func (d replaceDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = d.p.replace(t, d.content)
	}
	return out
}

// metaspaceDec turns "▁" back into spaces, except in the first token when the
// pre-tokenizer prepends one: there every "▁" goes, as in Hugging Face.
type metaspaceDec struct {
	rep         rune
	dropOnFirst bool
}

func (d metaspaceDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		first := i == 0 && d.dropOnFirst
		out[i] = strings.Map(func(c rune) rune {
			switch {
			case c != d.rep:
				return c
			case first:
				return -1
			}
			return ' '
		}, t)
	}
	return out
}
