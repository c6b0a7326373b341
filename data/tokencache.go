package data

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Fingerprinter is a tokenizer whose output is a function of its Fingerprint:
// two tokenizers with the same fingerprint encode every text alike. Only such
// tokenizers' ids are cached on disk (the byte tokenizer is not: reading ids
// back would be slower than making them).
type Fingerprinter interface {
	Fingerprint() string
}

// Affixer is a tokenizer that, as Hugging Face's add_special_tokens does, puts
// tokens before (BOS) and after (EOS, where the model's config says) every
// document.
type Affixer interface {
	Affixes() (prefix, suffix []int32)
}

// encoder turns a document into its token ids and loss mask: its spans
// encoded one by one, between the tokenizer's affixes, through the cache.
type encoder struct {
	tok      Tokenizer
	pre, suf []int32
	cache    *TokenCache // nil: none
}

func newEncoder(tok Tokenizer, cacheDir string) *encoder {
	e := &encoder{tok: tok}
	if a, ok := tok.(Affixer); ok {
		e.pre, e.suf = a.Affixes()
	}
	if f, ok := tok.(Fingerprinter); ok && cacheDir != "" {
		e.cache = &TokenCache{Dir: cacheDir, Tokenizer: f.Fingerprint()}
	}
	return e
}

// document reads d and returns its tokens and loss mask (nil: every token counts).
func (e *encoder) document(d *DocRef) ([]int32, []bool, error) {
	spans, err := d.spans()
	if err != nil {
		return nil, nil, err
	}
	var ids []int32
	var loss []bool
	hit := false
	if e.cache != nil {
		ids, loss, hit = e.cache.Get(spans)
	}
	if !hit {
		ids, loss = encodeSpans(e.tok, spans)
		if e.cache != nil {
			e.cache.Put(spans, ids, loss) // a cache that cannot be written only costs time
		}
	}
	if len(e.pre)+len(e.suf) == 0 || d.chat != nil {
		// A chat template writes its special tokens itself (Llama 3's its
		// BOS): its text is tokenized as Hugging Face's apply_chat_template
		// does, without add_special_tokens.
		return ids, loss, nil
	}
	out := make([]int32, 0, len(e.pre)+len(ids)+len(e.suf))
	out = append(append(append(out, e.pre...), ids...), e.suf...)
	if loss != nil {
		m := make([]bool, 0, len(out))
		m = append(m, make([]bool, len(e.pre))...) // a prefix is never a target within the document
		m = append(m, loss...)
		for range e.suf {
			m = append(m, true)
		}
		loss = m
	}
	return out, loss, nil
}

// TokenCache keeps documents' token ids on disk, keyed by the tokenizer's
// fingerprint and the document's text (every span and whether it counts), so
// a resumed or repeated run, or another run on the same data, tokenizes
// nothing again. An entry is a file written whole and renamed into place, and
// checked by length and CRC when read: a torn or foreign file is a miss.
type TokenCache struct {
	Dir       string
	Tokenizer string // the tokenizer's fingerprint
}

const tokenMagic = "TORUSTOK1\n"

// key is the entry's name: SHA-256 of the fingerprint and the spans.
func (c *TokenCache) key(spans []Span) string {
	h := sha256.New()
	var n [9]byte
	binary.LittleEndian.PutUint64(n[:8], uint64(len(c.Tokenizer)))
	h.Write(n[:8])
	h.Write([]byte(c.Tokenizer))
	for _, s := range spans {
		binary.LittleEndian.PutUint64(n[:8], uint64(len(s.Text)))
		n[8] = 0
		if s.Loss {
			n[8] = 1
		}
		h.Write(n[:])
		h.Write(s.Text)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (c *TokenCache) path(key string) string { return filepath.Join(c.Dir, key[:2], key[2:]+".tok") }

// Get returns the cached ids and loss mask of spans, if there are any.
func (c *TokenCache) Get(spans []Span) (ids []int32, loss []bool, ok bool) {
	b, err := os.ReadFile(c.path(c.key(spans)))
	if err != nil {
		return nil, nil, false
	}
	ids, loss, err = decodeTokens(b)
	return ids, loss, err == nil
}

// Put stores ids and loss (nil: every token counts) for spans.
func (c *TokenCache) Put(spans []Span, ids []int32, loss []bool) error {
	path := c.path(c.key(spans))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tok-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(encodeTokens(ids, loss))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// encodeTokens: magic, count and mask flag, ids (int32 little-endian), the
// mask (a byte per token, if any), CRC-32 of all before it.
func encodeTokens(ids []int32, loss []bool) []byte {
	var b bytes.Buffer
	b.WriteString(tokenMagic)
	hdr := make([]byte, 9)
	binary.LittleEndian.PutUint64(hdr, uint64(len(ids)))
	if loss != nil {
		hdr[8] = 1
	}
	b.Write(hdr)
	buf := make([]byte, 4*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint32(buf[4*i:], uint32(id))
	}
	b.Write(buf)
	for _, m := range loss {
		if m {
			b.WriteByte(1)
		} else {
			b.WriteByte(0)
		}
	}
	binary.Write(&b, binary.LittleEndian, crc32.ChecksumIEEE(b.Bytes()))
	return b.Bytes()
}

var errBadEntry = errors.New("data: token cache: bad entry")

func decodeTokens(b []byte) ([]int32, []bool, error) {
	const head = len(tokenMagic) + 9
	if len(b) < head+4 || string(b[:len(tokenMagic)]) != tokenMagic {
		return nil, nil, errBadEntry
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, nil, errBadEntry
	}
	n := binary.LittleEndian.Uint64(b[len(tokenMagic):])
	masked := b[head-1] == 1
	want := uint64(head) + 4*n
	if masked {
		want += n
	}
	if n > uint64(len(b)) || want != uint64(len(body)) {
		return nil, nil, errBadEntry
	}
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(binary.LittleEndian.Uint32(b[head+4*i:]))
	}
	var loss []bool
	if masked {
		loss = make([]bool, n)
		for i, m := range b[head+4*int(n) : len(body)] {
			loss[i] = m == 1
		}
	}
	return ids, loss, nil
}

// DefaultTokenCacheDir is where runs keep token ids unless told otherwise:
// torus/tokens under the user's cache directory ($XDG_CACHE_HOME or ~/.cache).
func DefaultTokenCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("data: token cache: %w", err)
	}
	return filepath.Join(dir, "torus", "tokens"), nil
}
