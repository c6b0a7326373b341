package tokenizer

import (
	"fmt"
	"iter"
	"strings"
	"unicode/utf8"
)

// piece is a stretch of normalized text on its way to the model. first says it
// starts the input, which Metaspace's prepend_scheme "first" asks.
type piece struct {
	s     string
	first bool
}

// preTokenizer splits a piece into the words that the model encodes one by one,
// as a tokenizer.json "pre_tokenizer" does, handing each to emit in order. It
// streams: a whole document is one piece, and its words are never all held.
type preTokenizer interface {
	split(p piece, emit func(piece))
}

const supportedPreTokenizers = "Sequence, ByteLevel (last), Split, Metaspace, Digits"

// newPreTokenizer also reports whether c holds a ByteLevel pre-tokenizer: the
// model then works on bytes. ByteLevel must come last, where Llama 3, Qwen2 and
// GPT-2 have it: anything after it would see "Ġ" where we keep a space.
func newPreTokenizer(c *component, field string) (pt preTokenizer, byteLevel bool, err error) {
	if c == nil {
		return nil, false, nil
	}
	switch c.Type {
	case "Sequence":
		var seq preSeq
		for i, sub := range c.Pretokenizers {
			if byteLevel {
				return nil, false, fmt.Errorf("%s.pretokenizers[%d]: a pre-tokenizer after ByteLevel is not supported", field, i)
			}
			p, bl, err := newPreTokenizer(sub, fmt.Sprintf("%s.pretokenizers[%d]", field, i))
			if err != nil {
				return nil, false, err
			}
			if p != nil {
				seq = append(seq, p)
			}
			byteLevel = byteLevel || bl
		}
		return seq, byteLevel, nil
	case "ByteLevel":
		b := byteLevelPre{prefixSpace: c.AddPrefixSpace != nil && *c.AddPrefixSpace}
		if c.UseRegex == nil || *c.UseRegex {
			b.re = &pattern{fast: fastRules[gpt2Regex]}
		}
		return b, true, nil
	case "Split":
		p, err := newPattern(c.Pattern, field+".pattern")
		if err != nil {
			return nil, false, err
		}
		b, err := newBehavior(c.Behavior, field)
		return splitPre{p.matches, b, c.Invert}, false, err
	case "Digits":
		b := contiguous
		if c.Individual {
			b = isolated
		}
		return splitPre{digits, b, false}, false, nil
	case "Metaspace":
		return newMetaspace(c, field)
	}
	return nil, false, fmt.Errorf("%s: pre-tokenizer type %q is not supported (supported: %s)", field, c.Type, supportedPreTokenizers)
}

type preSeq []preTokenizer

func (q preSeq) split(p piece, emit func(piece)) {
	if len(q) == 0 {
		emit(p)
		return
	}
	// stage[i] hands a piece to pre-tokenizer i+1, the last one to emit.
	stage := make([]func(piece), len(q))
	for i := range q {
		if i == len(q)-1 {
			stage[i] = emit
			continue
		}
		next := q[i+1]
		after := &stage[i+1]
		stage[i] = func(c piece) { next.split(c, *after) }
	}
	q[0].split(p, stage[0])
}

// byteLevelPre adds the prefix space and splits with GPT-2's regex; turning bytes
// into "Ġ"-characters is left out, since the model works on the bytes.
type byteLevelPre struct {
	prefixSpace bool
	re          *pattern // nil: use_regex false
}

func (b byteLevelPre) split(p piece, emit func(piece)) {
	if b.prefixSpace && !strings.HasPrefix(p.s, " ") {
		p.s = " " + p.s
	}
	if b.re == nil {
		emit(p)
		return
	}
	splitPre{b.re.matches, isolated, false}.split(p, emit)
}

// behavior is what Split does with a match (SplitDelimiterBehavior).
type behavior int

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

func newBehavior(name, field string) (behavior, error) {
	for b, n := range []string{"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"} {
		if strings.EqualFold(name, n) {
			return behavior(b), nil
		}
	}
	return 0, fmt.Errorf("%s.behavior: %q is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous", field, name)
}

// splitPre cuts a piece at the matches of a pattern, as Hugging Face's
// NormalizedString.split does with a SplitDelimiterBehavior; empty pieces are
// dropped.
type splitPre struct {
	matches func(s string) iter.Seq2[int, int]
	how     behavior
	invert  bool
}

// span is a stretch of a piece, a match of the pattern or not.
type span struct {
	start, end int
	match      bool
}

func (sp splitPre) split(p piece, emit func(piece)) {
	out := func(s span) {
		if s.end > s.start {
			emit(piece{p.s[s.start:s.end], p.first && s.start == 0})
		}
	}
	// Rust folds the spans into a list; this does it as they come, holding back
	// the one span that the next may still join.
	var held span
	holding, wasMatch := false, false
	take := func(s span) {
		s.match = s.match != sp.invert
		switch sp.how {
		case isolated:
			out(s)
		case removed:
			if !s.match {
				out(s)
			}
		case contiguous, mergedWithPrevious:
			join := s.match == wasMatch
			if sp.how == mergedWithPrevious {
				join = s.match && !wasMatch
			}
			if join && holding {
				held.end = s.end
			} else {
				if holding {
					out(held)
				}
				held, holding = s, true
			}
		case mergedWithNext: // a match joins the non-match after it
			if holding && !s.match {
				out(span{held.start, s.end, false})
				holding = false
			} else {
				if holding {
					out(held)
				}
				if held, holding = s, s.match; !s.match {
					out(s)
				}
			}
		}
		wasMatch = s.match
	}
	prev := 0
	for start, end := range sp.matches(p.s) {
		if prev < start {
			take(span{prev, start, false})
		}
		take(span{start, end, true})
		prev = end
	}
	if prev < len(p.s) {
		take(span{prev, len(p.s), false})
	}
	if holding {
		out(held)
	}
}

// digits matches each numeric character (Rust's char::is_numeric: \p{N}).
func digits(s string) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		for i, c := range s {
			if isNumber(c) && !yield(i, i+utf8.RuneLen(c)) {
				return
			}
		}
	}
}

// metaspace replaces spaces by "▁", prepends one (always, or only to the start
// of the input with prepend_scheme "first", or never), and with split cuts
// before each "▁".
type metaspace struct {
	rep     string
	prepend string // "always", "first" or "never"
	cut     bool   // split
}

func newMetaspace(c *component, field string) (preTokenizer, bool, error) {
	m := metaspace{rep: "\u2581", prepend: "always", cut: c.Split == nil || *c.Split}
	if c.Replacement != nil {
		if utf8.RuneCountInString(*c.Replacement) != 1 {
			return nil, false, fmt.Errorf("%s.replacement: want one character, have %q", field, *c.Replacement)
		}
		m.rep = *c.Replacement
	}
	if c.PrependScheme != nil {
		m.prepend = *c.PrependScheme
		if m.prepend != "always" && m.prepend != "first" && m.prepend != "never" {
			return nil, false, fmt.Errorf("%s.prepend_scheme: %q is not one of always, first, never", field, m.prepend)
		}
	}
	if c.AddPrefixSpace != nil && !*c.AddPrefixSpace { // the older spelling of "never"
		m.prepend = "never"
	}
	return m, false, nil
}

func (m metaspace) split(p piece, emit func(piece)) {
	s := strings.ReplaceAll(p.s, " ", m.rep)
	if !strings.HasPrefix(s, m.rep) && (m.prepend == "always" || m.prepend == "first" && p.first) {
		s = m.rep + s
	}
	p.s = s
	if !m.cut {
		emit(p)
		return
	}
	lit := pattern{lit: m.rep}
	splitPre{lit.matches, mergedWithNext, false}.split(p, emit)
}
