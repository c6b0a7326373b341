package data

import (
	"fmt"
	"os"
	"unicode/utf8"
)

// Tokenizer maps text to token ids and back. Implementations must be safe for
// concurrent use.
type Tokenizer interface {
	// Encode returns the token ids of text.
	Encode(text []byte) []int32
	// Decode returns the text of ids. Ids outside [0, VocabSize()) decode to
	// the Unicode replacement character.
	Decode(ids []int32) []byte
	// VocabSize is the number of distinct ids: every id is in [0, VocabSize()).
	VocabSize() int
	// Name is the name NewTokenizer knows it by.
	Name() string
}

// NewTokenizer returns the tokenizer spec names: "byte", or a Hugging Face
// tokenizer.json (a file, or a model folder holding one; see package
// tokenizer), which puts the BOS (and EOS, where its files say) around every
// document as Hugging Face's add_special_tokens does.
func NewTokenizer(spec string) (Tokenizer, error) {
	if spec == "byte" {
		return ByteTokenizer{}, nil
	}
	if _, err := os.Stat(spec); err != nil {
		return nil, fmt.Errorf("data: tokenizer %q: not \"byte\", and not a tokenizer.json or a model folder: %w", spec, err)
	}
	return loadHF(spec)
}

// ByteTokenizer is the identity on bytes: vocabulary 256, id = byte value.
type ByteTokenizer struct{}

// Encode returns one id per byte of text.
func (ByteTokenizer) Encode(text []byte) []int32 {
	ids := make([]int32, len(text))
	for i, c := range text {
		ids[i] = int32(c)
	}
	return ids
}

// Decode returns one byte per id; an id outside [0, 256) becomes U+FFFD.
func (ByteTokenizer) Decode(ids []int32) []byte {
	text := make([]byte, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id > 255 {
			text = utf8.AppendRune(text, utf8.RuneError)
			continue
		}
		text = append(text, byte(id))
	}
	return text
}

// VocabSize is 256.
func (ByteTokenizer) VocabSize() int { return 256 }

// Name is "byte".
func (ByteTokenizer) Name() string { return "byte" }
