package tokenizer

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// Tokenizer encodes and decodes text as the Hugging Face tokenizer it was loaded
// from does. It never changes after Load: all methods are safe for concurrent use.
type Tokenizer struct {
	name string

	raw    *addedSet // added tokens matched in the raw text (normalized: false)
	normed *addedSet // added tokens matched in the normalized text
	norm   normalizer
	pre    preTokenizer
	model  *bpe
	dec    decoder

	prefix, suffix []int32 // what EncodeSpecial puts around the text

	tokens   []string // by id, as the vocabulary spells it
	has      []bool   // by id: whether the id has a token
	ids      map[string]int32
	decodeAs map[int32]string // normalized added tokens decode to their normalized form, as in Hugging Face
	rawDec   [][]byte         // by id: the bytes a token decodes to; nil unless the decoder is ByteLevel alone
	special  map[int32]bool

	bos, eos, pad int32 // -1: none
	chat          string
}

// Encode returns the ids of text without special tokens around it, as Hugging
// Face's encode(text, add_special_tokens=False). Added tokens written in the text
// (a literal "<|begin_of_text|>") are recognized, as there. Bytes that are not
// valid UTF-8 are read as U+FFFD, one per maximal ill-formed subsequence, the
// way every Hugging Face front end decodes them into a string before encoding.
func (t *Tokenizer) Encode(text []byte) []int32 {
	return t.encode(validString(text), make([]int32, 0, len(text)/3+4))
}

// EncodeSpecial is Encode with the special tokens that the post-processor adds
// (Llama 2's <s> before the text), as encode(text, add_special_tokens=True).
func (t *Tokenizer) EncodeSpecial(text []byte) []int32 {
	out := make([]int32, 0, len(text)/3+len(t.prefix)+len(t.suffix)+4)
	out = append(out, t.prefix...)
	out = t.encode(validString(text), out)
	return append(out, t.suffix...)
}

func (t *Tokenizer) encode(s string, out []int32) []int32 {
	word := func(p piece) { out = t.model.encode(p.s, out) }
	var subs []segment
	for _, sg := range t.raw.split(nil, s, true) {
		if sg.id >= 0 {
			out = append(out, sg.id)
			continue
		}
		n := sg.s
		if t.norm != nil {
			n = t.norm.normalize(n)
		}
		subs = t.normed.split(subs[:0], n, sg.first)
		for _, sub := range subs {
			switch {
			case sub.id >= 0:
				out = append(out, sub.id)
			case t.pre == nil:
				word(piece{sub.s, sub.first})
			default:
				t.pre.split(piece{sub.s, sub.first}, word)
			}
		}
	}
	return out
}

// Affixes returns the ids that EncodeSpecial puts before and after the text.
func (t *Tokenizer) Affixes() (prefix, suffix []int32) {
	return slices.Clone(t.prefix), slices.Clone(t.suffix)
}

// Decode returns the text of ids, as Hugging Face's decode(ids,
// skip_special_tokens=False) without clean_up_tokenization_spaces (Rust
// tokenizers' own decode). The result is always valid UTF-8: bytes that do not
// form characters become U+FFFD as there. An id without a token (negative, past
// VocabSize, or a hole in the vocabulary) decodes to U+FFFD; Hugging Face drops
// such ids silently, we leave a mark.
func (t *Tokenizer) Decode(ids []int32) []byte {
	if t.rawDec != nil {
		var b []byte
		for _, id := range ids {
			if t.valid(id) {
				b = append(b, t.rawDec[id]...)
			} else {
				b = append(b, "\uFFFD"...)
			}
		}
		return appendValidUTF8(make([]byte, 0, len(b)), b)
	}
	toks := make([]string, len(ids))
	for i, id := range ids {
		toks[i] = "\uFFFD"
		if t.valid(id) {
			toks[i] = t.tokens[id]
			if d, ok := t.decodeAs[id]; ok {
				toks[i] = d
			}
		}
	}
	var s string
	if t.dec == nil {
		s = strings.Join(toks, " ") // Hugging Face without a decoder
	} else {
		s = strings.Join(t.dec.decode(toks), "")
	}
	if utf8.ValidString(s) {
		return []byte(s)
	}
	return appendValidUTF8(nil, []byte(s))
}

func (t *Tokenizer) valid(id int32) bool { return id >= 0 && int(id) < len(t.has) && t.has[id] }

// VocabSize is the largest id, added tokens included, plus one.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Name is the path the tokenizer was loaded from.
func (t *Tokenizer) Name() string { return t.name }

// BOS is the id of tokenizer_config.json's bos_token; without one, the first
// special token that the post-processor puts before the text.
func (t *Tokenizer) BOS() (int32, bool) { return t.bos, t.bos >= 0 }

// EOS is the id of tokenizer_config.json's eos_token; without one, the last
// special token that the post-processor puts after the text.
func (t *Tokenizer) EOS() (int32, bool) { return t.eos, t.eos >= 0 }

// Pad is the id of tokenizer_config.json's pad_token.
func (t *Tokenizer) Pad() (int32, bool) { return t.pad, t.pad >= 0 }

// ChatTemplate is tokenizer_config.json's chat_template (Jinja), "" without one.
func (t *Tokenizer) ChatTemplate() string { return t.chat }

// Token is the token of id as the vocabulary spells it ("Ġthe", "▁the", "<s>").
func (t *Tokenizer) Token(id int32) (string, bool) {
	if !t.valid(id) {
		return "", false
	}
	return t.tokens[id], true
}

// IsSpecial says whether id is an added token marked special.
func (t *Tokenizer) IsSpecial(id int32) bool { return t.special[id] }
