package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens: a token found in the
// text as it is, before the model sees it (Llama 3's <|begin_of_text|>).
type addedToken struct {
	content    string
	id         int32
	special    bool
	singleWord bool // only where no word character touches it
	lstrip     bool // takes the white space on its left
	rstrip     bool // and on its right
	normalized bool // matched in the normalized text rather than the raw one
}

// segment is a stretch of text, or an added token (id >= 0) found in it.
type segment struct {
	s     string
	id    int32
	first bool // starts the input
}

// addedSet finds a set of added tokens in a text as Hugging Face's
// AddedVocabulary.find_matches does: leftmost-longest matches, scanning on from
// the end of each; a single_word token touching a word character is passed
// over; lstrip and rstrip widen a match over the white space beside it.
type addedSet struct {
	nodes []trieNode
	first [256]bool // first bytes of the tokens
	toks  []*addedToken
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into toks of the token ending here, or -1
}

func newAddedSet(toks []*addedToken, key func(*addedToken) string) *addedSet {
	a := &addedSet{nodes: []trieNode{{tok: -1}}}
	for _, t := range toks {
		k := key(t)
		if k == "" {
			continue // Hugging Face ignores empty added tokens
		}
		n := int32(0)
		for i := 0; i < len(k); i++ {
			nx, ok := a.nodes[n].next[k[i]]
			if !ok {
				if a.nodes[n].next == nil {
					a.nodes[n].next = map[byte]int32{}
				}
				nx = int32(len(a.nodes))
				a.nodes[n].next[k[i]] = nx
				a.nodes = append(a.nodes, trieNode{tok: -1})
			}
			n = nx
		}
		a.nodes[n].tok = int32(len(a.toks))
		a.toks = append(a.toks, t)
		a.first[k[0]] = true
	}
	return a
}

// next finds the leftmost-longest token match at or after pos.
func (a *addedSet) next(s string, pos int) (start, end int, t *addedToken) {
	for i := pos; i < len(s); i++ {
		if !a.first[s[i]] {
			continue
		}
		n, best := int32(0), -1
		for j := i; j < len(s); j++ {
			nx, ok := a.nodes[n].next[s[j]]
			if !ok {
				break
			}
			n = nx
			if a.nodes[n].tok >= 0 {
				best, t = j+1, a.toks[a.nodes[n].tok]
			}
		}
		if best > 0 {
			return i, best, t
		}
	}
	return len(s), len(s), nil
}

// split appends the text and token segments of s; first says s starts the input.
// Empty text segments are dropped.
func (a *addedSet) split(dst []segment, s string, first bool) []segment {
	if a == nil || len(a.toks) == 0 {
		if s == "" {
			return dst
		}
		return append(dst, segment{s, -1, first})
	}
	done := 0 // end of the last segment emitted
	for pos := 0; pos < len(s); {
		start, end, t := a.next(s, pos)
		if t == nil {
			break
		}
		pos = end // the next search starts here even if rstrip takes more
		if t.singleWord && (start > 0 && endsWithWord(s[:start]) || end < len(s) && startsWithWord(s[end:])) {
			continue
		}
		if t.lstrip {
			start = max(len(strings.TrimRightFunc(s[:start], unicode.IsSpace)), done)
		}
		if t.rstrip {
			end = len(s) - len(strings.TrimLeftFunc(s[end:], unicode.IsSpace))
		}
		if done < start {
			dst = append(dst, segment{s[done:start], -1, first && done == 0})
		}
		dst = append(dst, segment{s[start:end], t.id, false})
		done = end
	}
	if done < len(s) {
		dst = append(dst, segment{s[done:], -1, first && done == 0})
	}
	return dst
}

// A word character is Rust regex's \w: alphabetic, mark, decimal digit,
// connector punctuation or join control.
func isWordChar(c rune) bool {
	return unicode.IsLetter(c) || unicode.IsMark(c) || unicode.Is(unicode.Nd, c) ||
		unicode.In(c, unicode.Nl, unicode.Other_Alphabetic, unicode.Pc, unicode.Join_Control)
}

func endsWithWord(s string) bool {
	c, _ := utf8.DecodeLastRuneInString(s)
	return isWordChar(c)
}

func startsWithWord(s string) bool {
	c, _ := utf8.DecodeRuneInString(s)
	return isWordChar(c)
}
