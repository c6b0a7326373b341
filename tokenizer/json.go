package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The parts of tokenizer.json and tokenizer_config.json that this package reads.
// Fields of other component types are ignored; a type it cannot run is an error.

type fileJSON struct {
	AddedTokens   []addedJSON `json:"added_tokens"`
	Normalizer    *component  `json:"normalizer"`
	PreTokenizer  *component  `json:"pre_tokenizer"`
	PostProcessor *component  `json:"post_processor"`
	Decoder       *component  `json:"decoder"`
	Model         *modelJSON  `json:"model"`
}

type addedJSON struct {
	ID         int64  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"` // default: !special
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Dropout                 *float64        `json:"dropout"`
}

// component is any normalizer, pre-tokenizer, post-processor or decoder: the
// union of the fields that the supported types use.
type component struct {
	Type string `json:"type"`

	Normalizers   []*component `json:"normalizers"`   // Sequence
	Pretokenizers []*component `json:"pretokenizers"` // Sequence
	Processors    []*component `json:"processors"`    // Sequence
	Decoders      []*component `json:"decoders"`      // Sequence

	Prepend    *string      `json:"prepend"`     // Prepend
	Pattern    *patternJSON `json:"pattern"`     // Replace, Split
	Content    *string      `json:"content"`     // Replace, Strip decoder
	StripLeft  bool         `json:"strip_left"`  // Strip normalizer
	StripRight bool         `json:"strip_right"` // Strip normalizer
	Start      int          `json:"start"`       // Strip decoder
	Stop       int          `json:"stop"`        // Strip decoder

	AddPrefixSpace *bool   `json:"add_prefix_space"` // ByteLevel, Metaspace
	UseRegex       *bool   `json:"use_regex"`        // ByteLevel
	Replacement    *string `json:"replacement"`      // Metaspace
	PrependScheme  *string `json:"prepend_scheme"`   // Metaspace
	Split          *bool   `json:"split"`            // Metaspace
	Behavior       string  `json:"behavior"`         // Split
	Invert         bool    `json:"invert"`           // Split
	Individual     bool    `json:"individual_digits"`

	Single        []templatePiece        `json:"single"`         // TemplateProcessing
	SpecialTokens map[string]specialJSON `json:"special_tokens"` // TemplateProcessing
	Sep           json.RawMessage        `json:"sep"`            // BertProcessing, RobertaProcessing: [token, id]
	Cls           json.RawMessage        `json:"cls"`
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type templatePiece struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

type specialJSON struct {
	IDs []int64 `json:"ids"`
}

type configJSON struct {
	AddBOS       *bool           `json:"add_bos_token"`
	AddEOS       *bool           `json:"add_eos_token"`
	BOS          json.RawMessage `json:"bos_token"`
	EOS          json.RawMessage `json:"eos_token"`
	Pad          json.RawMessage `json:"pad_token"`
	ChatTemplate json.RawMessage `json:"chat_template"`
}

// decodeJSON unmarshals data into v; an error says where in data it went wrong.
func decodeJSON(data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at %s: %v", position(data, syn.Offset-1), syn) // Offset: bytes read, the bad one included
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(the top level)"
		}
		return fmt.Errorf("field %s at %s: want %v, have a JSON %s", field, position(data, typ.Offset), typ.Type, typ.Value)
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

// position spells a byte offset of data as line, column (1-based) and offset.
func position(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d (byte %d)", line, col, off)
}

// tokenName reads a tokenizer_config.json token field: a string, null, or an
// AddedToken object {"content": ...}. ok is false for null or absent.
func tokenName(raw json.RawMessage, field string) (name string, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	if json.Unmarshal(raw, &name) == nil {
		return name, true, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Content != nil {
		return *obj.Content, true, nil
	}
	return "", false, fmt.Errorf("%s: want a string or {\"content\": string}, have %.40s", field, raw)
}

// chatTemplate reads chat_template: a string, or a list of {name, template} from
// which it takes "default", else the first.
func chatTemplate(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", fmt.Errorf("chat_template: want a string or a list of {name, template}: %v", err)
	}
	for _, t := range list {
		if t.Name == "default" {
			return t.Template, nil
		}
	}
	if len(list) > 0 {
		return list[0].Template, nil
	}
	return "", nil
}
