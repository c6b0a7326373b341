package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Load reads a Hugging Face tokenizer: a tokenizer.json file, or a model folder
// holding one. From a folder it also reads, where present, tokenizer_config.json
// (bos_token, eos_token, pad_token, chat_template, add_bos_token and
// add_eos_token) and special_tokens_map.json, whose token names take precedence
// as in transformers. add_bos_token and add_eos_token, where set, decide whether
// EncodeSpecial puts the BOS before and the EOS after the text, overriding the
// post-processor on that side (transformers' update_post_processor).
//
// Supported: model.type "BPE", byte-level (a ByteLevel pre-tokenizer, alone or
// after a Split, as GPT-2, Llama 3 and Qwen2 have) or SentencePiece-style
// (Metaspace or Prepend/Replace normalizers, byte_fallback, as Llama 2 and
// Mistral have). An error names the file and the field at fault. truncation
// and padding are ignored: Encode neither truncates nor pads.
func Load(path string) (*Tokenizer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	tok := namedFile{name: path}
	var configs []namedFile
	if fi.IsDir() {
		tok.name = filepath.Join(path, "tokenizer.json")
		for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
			c := namedFile{name: filepath.Join(path, name)}
			if c.data, err = os.ReadFile(c.name); errors.Is(err, fs.ErrNotExist) {
				continue
			} else if err != nil {
				return nil, fmt.Errorf("tokenizer: %w", err)
			}
			configs = append(configs, c)
		}
	}
	if tok.data, err = os.ReadFile(tok.name); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := build(tok, configs...)
	if err != nil {
		return nil, err
	}
	t.name = path
	return t, nil
}

// namedFile is a file's bytes and its name, for errors.
type namedFile struct {
	name string
	data []byte
}

// build makes a tokenizer from tokenizer.json and the config files, applied in order.
func build(file namedFile, configs ...namedFile) (*Tokenizer, error) {
	var f fileJSON
	if err := decodeJSON(file.data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", file.name, err)
	}
	t, err := f.tokenizer()
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", file.name, err)
	}
	var add addSpecial
	for _, c := range configs {
		if err := t.configure(c, &add); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", c.name, err)
		}
	}
	if err := t.addSpecial(add); err != nil {
		return nil, err
	}
	if t.bos < 0 && len(t.prefix) > 0 {
		t.bos = t.prefix[0]
	}
	if t.eos < 0 && len(t.suffix) > 0 {
		t.eos = t.suffix[len(t.suffix)-1]
	}
	return t, nil
}

func (f *fileJSON) tokenizer() (*Tokenizer, error) {
	m := f.Model
	switch {
	case m == nil:
		return nil, errors.New(`no "model"`)
	case m.Type == "" && m.Merges == nil, m.Type != "" && m.Type != "BPE":
		return nil, fmt.Errorf("model.type %q is not supported (supported: \"BPE\", byte-level or SentencePiece-style)", m.Type)
	case m.Dropout != nil && *m.Dropout > 0:
		return nil, fmt.Errorf("model.dropout %g is not supported: BPE dropout samples a different encoding each time", *m.Dropout)
	}
	vocab, err := readVocab(m.Vocab)
	if err != nil {
		return nil, err
	}
	merges, err := readMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	model, err := newBPE(vocab, merges, m.UnkToken, deref(m.ContinuingSubwordPrefix), deref(m.EndOfWordSuffix))
	if err != nil {
		return nil, err
	}
	model.fuseUnk, model.byteFallback, model.ignoreMerges = m.FuseUnk, m.ByteFallback, m.IgnoreMerges
	t := &Tokenizer{model: model, bos: -1, eos: -1, pad: -1}
	if t.norm, err = newNormalizer(f.Normalizer, "normalizer"); err != nil {
		return nil, err
	}
	var byteLevel bool
	if t.pre, byteLevel, err = newPreTokenizer(f.PreTokenizer, "pre_tokenizer"); err != nil {
		return nil, err
	}
	if byteLevel {
		model.setByteLevel()
	}
	if t.dec, err = newDecoder(f.Decoder, "decoder"); err != nil {
		return nil, err
	}
	if err := t.setTokens(vocab, f.AddedTokens); err != nil {
		return nil, err
	}
	if t.prefix, t.suffix, err = t.postProcessor(f.PostProcessor, "post_processor"); err != nil {
		return nil, err
	}
	if _, ok := t.dec.(byteLevelDec); ok {
		t.rawDec = make([][]byte, len(t.tokens))
		for id, tok := range t.tokens {
			if d, ok := t.decodeAs[int32(id)]; ok {
				tok = d
			}
			t.rawDec[id], _ = byteLevelBytes(tok)
		}
	}
	return t, nil
}

func readVocab(raw json.RawMessage) (map[string]int32, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return nil, errors.New(`model has no "vocab"`)
	case raw[0] == '[':
		return nil, errors.New("model.vocab is a list (a Unigram vocabulary); BPE wants an object of token: id")
	}
	var v map[string]int64
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("model.vocab: want an object of token: id: %v", err)
	}
	vocab := make(map[string]int32, len(v))
	for tok, id := range v {
		if id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("model.vocab[%q]: id %d is out of range", tok, id)
		}
		vocab[tok] = int32(id)
	}
	return vocab, nil
}

func readMerges(raw json.RawMessage) ([][2]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New(`model has no "merges"`)
	}
	var lines []string
	if json.Unmarshal(raw, &lines) == nil {
		merges := make([][2]string, 0, len(lines))
		for i, l := range lines {
			if strings.HasPrefix(l, "#version") {
				continue
			}
			a, b, ok := strings.Cut(l, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("model.merges[%d]: %q is not two tokens separated by one space", i, l)
			}
			merges = append(merges, [2]string{a, b})
		}
		return merges, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf(`model.merges: want a list of "a b" strings or of ["a", "b"] pairs: %v`, err)
	}
	merges := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d]: want two tokens, have %d", i, len(p))
		}
		merges[i] = [2]string{p[0], p[1]}
	}
	return merges, nil
}

// setTokens fills the id tables from the vocabulary and the added tokens, and
// builds the two sets of added tokens that encode looks for.
func (t *Tokenizer) setTokens(vocab map[string]int32, added []addedJSON) error {
	maxID := int64(-1)
	for _, id := range vocab {
		maxID = max(maxID, int64(id))
	}
	for i, a := range added {
		if a.ID < 0 || a.ID > math.MaxInt32 {
			return fmt.Errorf("added_tokens[%d] (%q): id %d is out of range", i, a.Content, a.ID)
		}
		maxID = max(maxID, a.ID)
	}
	// Ids index tables, so a stray huge id must not allocate gigabytes.
	if n := int64(len(vocab) + len(added)); maxID >= 4*n+65536 {
		return fmt.Errorf("id %d is far past the %d tokens: ids must be dense", maxID, n)
	}
	t.tokens = make([]string, maxID+1)
	t.has = make([]bool, maxID+1)
	for tok, id := range vocab {
		if t.has[id] {
			a, b := min(tok, t.tokens[id]), max(tok, t.tokens[id])
			return fmt.Errorf("model.vocab: %q and %q both have id %d", a, b, id)
		}
		t.tokens[id], t.has[id] = tok, true
	}
	t.ids = make(map[string]int32, len(added))
	t.special = map[int32]bool{}
	t.decodeAs = map[int32]string{}
	var raw, normed []*addedToken
	for _, a := range added {
		tok := &addedToken{content: a.Content, id: int32(a.ID), special: a.Special, singleWord: a.SingleWord,
			lstrip: a.LStrip, rstrip: a.RStrip, normalized: !a.Special}
		if a.Normalized != nil {
			tok.normalized = *a.Normalized
		}
		t.tokens[tok.id], t.has[tok.id] = tok.content, true
		t.ids[tok.content] = tok.id
		if tok.special {
			t.special[tok.id] = true
		}
		if !tok.normalized {
			raw = append(raw, tok)
			continue
		}
		normed = append(normed, tok)
		if t.norm != nil {
			if n := t.norm.normalize(tok.content); n != tok.content {
				t.decodeAs[tok.id] = n
			}
		}
	}
	t.raw = newAddedSet(raw, func(a *addedToken) string { return a.content })
	t.normed = newAddedSet(normed, func(a *addedToken) string {
		if n, ok := t.decodeAs[a.id]; ok {
			return n
		}
		return a.content
	})
	return nil
}

// ID is the id of a token as the vocabulary spells it; added tokens first.
func (t *Tokenizer) ID(token string) (int32, bool) {
	if id, ok := t.ids[token]; ok {
		return id, true
	}
	id, ok := t.model.vocab[token]
	return id, ok
}

// postProcessor returns the ids that EncodeSpecial puts before and after the text.
func (t *Tokenizer) postProcessor(c *component, field string) (pre, suf []int32, err error) {
	if c == nil {
		return nil, nil, nil
	}
	checked := func(id int64, what string) (int32, error) {
		if id < 0 || id >= int64(len(t.has)) || !t.has[id] {
			return 0, fmt.Errorf("%s: id %d is not in the vocabulary", what, id)
		}
		return int32(id), nil
	}
	switch c.Type {
	case "ByteLevel":
		return nil, nil, nil
	case "Sequence":
		for i, sub := range c.Processors {
			p, s, err := t.postProcessor(sub, fmt.Sprintf("%s.processors[%d]", field, i))
			if err != nil {
				return nil, nil, err
			}
			pre, suf = append(p, pre...), append(suf, s...)
		}
		return pre, suf, nil
	case "TemplateProcessing":
		seenA := false
		for i, p := range c.Single {
			where := fmt.Sprintf("%s.single[%d]", field, i)
			switch {
			case p.Sequence != nil && p.Sequence.ID == "A" && !seenA:
				seenA = true
			case p.SpecialToken != nil:
				st, ok := c.SpecialTokens[p.SpecialToken.ID]
				if !ok {
					return nil, nil, fmt.Errorf("%s: %q is not in %s.special_tokens", where, p.SpecialToken.ID, field)
				}
				for _, id := range st.IDs {
					id32, err := checked(id, fmt.Sprintf("%s.special_tokens[%q]", field, p.SpecialToken.ID))
					if err != nil {
						return nil, nil, err
					}
					if seenA {
						suf = append(suf, id32)
					} else {
						pre = append(pre, id32)
					}
				}
			default:
				return nil, nil, fmt.Errorf("%s: want one Sequence A and SpecialTokens", where)
			}
		}
		if !seenA {
			return nil, nil, fmt.Errorf("%s.single: no Sequence A", field)
		}
		return pre, suf, nil
	case "BertProcessing", "RobertaProcessing":
		var ids [2]int32
		for k, raw := range []json.RawMessage{c.Cls, c.Sep} {
			var pair []json.RawMessage
			var id int64
			if json.Unmarshal(raw, &pair) != nil || len(pair) != 2 || json.Unmarshal(pair[1], &id) != nil {
				return nil, nil, fmt.Errorf("%s.%s: want [token, id]", field, []string{"cls", "sep"}[k])
			}
			if ids[k], err = checked(id, field+"."+[]string{"cls", "sep"}[k]); err != nil {
				return nil, nil, err
			}
		}
		return ids[:1], ids[1:], nil
	}
	return nil, nil, fmt.Errorf("%s: post-processor type %q is not supported (supported: TemplateProcessing, ByteLevel, Sequence, BertProcessing, RobertaProcessing)", field, c.Type)
}

// addSpecial holds add_bos_token and add_eos_token, and the file that set each.
type addSpecial struct {
	bos, eos         *bool
	bosFile, eosFile string
}

// configure applies tokenizer_config.json or special_tokens_map.json: a token
// name or template that c sets replaces what an earlier file set.
func (t *Tokenizer) configure(c namedFile, add *addSpecial) error {
	var cfg configJSON
	if err := decodeJSON(c.data, &cfg); err != nil {
		return err
	}
	chat, err := chatTemplate(cfg.ChatTemplate)
	if err != nil {
		return err
	}
	if chat != "" {
		t.chat = chat
	}
	for _, f := range []struct {
		raw   json.RawMessage
		field string
		id    *int32
	}{{cfg.BOS, "bos_token", &t.bos}, {cfg.EOS, "eos_token", &t.eos}, {cfg.Pad, "pad_token", &t.pad}} {
		name, ok, err := tokenName(f.raw, f.field)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		id, ok := t.ID(name)
		if !ok {
			return fmt.Errorf("%s %q is not in the vocabulary", f.field, name)
		}
		*f.id = id
	}
	if cfg.AddBOS != nil {
		add.bos, add.bosFile = cfg.AddBOS, c.name
	}
	if cfg.AddEOS != nil {
		add.eos, add.eosFile = cfg.AddEOS, c.name
	}
	return nil
}

// addSpecial sets what EncodeSpecial adds on each side that add_bos_token or
// add_eos_token speaks of.
func (t *Tokenizer) addSpecial(add addSpecial) error {
	if add.bos != nil {
		if t.prefix = nil; *add.bos {
			if t.bos < 0 {
				return fmt.Errorf("tokenizer: %s: add_bos_token is true but there is no bos_token", add.bosFile)
			}
			t.prefix = []int32{t.bos}
		}
	}
	if add.eos != nil {
		if t.suffix = nil; *add.eos {
			if t.eos < 0 {
				return fmt.Errorf("tokenizer: %s: add_eos_token is true but there is no eos_token", add.eosFile)
			}
			t.suffix = []int32{t.eos}
		}
	}
	return nil
}
