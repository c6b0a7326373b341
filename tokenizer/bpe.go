package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpe is the model of a tokenizer.json whose model.type is "BPE", with Hugging
// Face's semantics: a word starts as one symbol per character (per byte for a
// byte-level vocabulary), and the merges apply by the rank of the pair in the
// merges list, lowest rank first and leftmost among equals. (tiktoken ranks the
// merged token instead; the two agree on tiktoken-born vocabularies such as
// Llama 3's, not on GPT-2-style merges lists.)
type bpe struct {
	vocab  map[string]int32 // token, in the model's alphabet, to id
	merges map[uint64]merge // pairKey(left, right) to its rank and merged id

	unk          int32 // unk_token's id, -1 without one: unknown characters are dropped
	fuseUnk      bool
	byteFallback bool       // unknown characters become their <0xNN> byte tokens
	byteIDs      [256]int32 // <0xNN> ids, -1 where absent
	ignoreMerges bool       // a word that is a token is that token, merges or not
	prefix       string     // continuing_subword_prefix, on every symbol but the first
	suffix       string     // end_of_word_suffix, on the last symbol

	// A byte-level model (ByteLevel pre-tokenizer) works on raw bytes: byteUnit is
	// the id of each byte's stand-in character, rawVocab the vocabulary keyed by
	// the bytes its tokens stand for. Nothing maps text to "Ġ"-strings at run time.
	byteLevel bool
	byteUnit  [256]int32
	rawVocab  map[string]int32

	// cut is "▁" when no token has a "▁" after another character and "▁" is a
	// token: words are then cut before each such "▁" (see encode). "" otherwise.
	cut string

	cache *wordCache
}

type merge struct{ rank, id int32 }

// metaspaceChar stands for a space in SentencePiece vocabularies.
const metaspaceChar = "\u2581"

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// newBPE checks the model against its vocabulary; errors name the merge at fault.
func newBPE(vocab map[string]int32, merges [][2]string, unk *string, prefix, suffix string) (*bpe, error) {
	m := &bpe{vocab: vocab, merges: make(map[uint64]merge, len(merges)), unk: -1, prefix: prefix, suffix: suffix,
		cache: newWordCache()}
	if unk != nil {
		id, ok := vocab[*unk]
		if !ok {
			return nil, fmt.Errorf("model.unk_token %q is not in model.vocab", *unk)
		}
		m.unk = id
	}
	for b := range 256 {
		m.byteIDs[b] = lookup(vocab, fmt.Sprintf("<0x%02X>", b))
	}
	if _, ok := vocab[metaspaceChar]; ok && prefix == "" && suffix == "" {
		m.cut = metaspaceChar
		for tok := range vocab {
			if strings.Contains(strings.TrimLeft(tok, metaspaceChar), metaspaceChar) {
				m.cut = ""
				break
			}
		}
	}
	for rank, mg := range merges {
		a, b := mg[0], mg[1]
		ida, oka := vocab[a]
		idb, okb := vocab[b]
		if !oka || !okb {
			missing := a
			if oka {
				missing = b
			}
			return nil, fmt.Errorf("model.merges[%d] (%q %q): %q is not in model.vocab", rank, a, b, missing)
		}
		if len(b) < len(prefix) || b[:len(prefix)] != prefix {
			return nil, fmt.Errorf("model.merges[%d] (%q %q): %q lacks continuing_subword_prefix %q", rank, a, b, b, prefix)
		}
		merged := a + b[len(prefix):]
		id, ok := vocab[merged]
		if !ok {
			return nil, fmt.Errorf("model.merges[%d] (%q %q): the merged token %q is not in model.vocab", rank, a, b, merged)
		}
		// A pair listed twice keeps its last rank, as in Hugging Face (a map built in order).
		m.merges[pairKey(ida, idb)] = merge{int32(rank), id}
	}
	return m, nil
}

func lookup(vocab map[string]int32, tok string) int32 {
	if id, ok := vocab[tok]; ok {
		return id
	}
	return -1
}

// setByteLevel switches the model to raw bytes (see bpe.byteLevel).
func (m *bpe) setByteLevel() {
	m.byteLevel, m.cut = true, ""
	for b := range 256 {
		m.byteUnit[b] = lookup(m.vocab, byteCharString[b])
	}
	m.rawVocab = make(map[string]int32, len(m.vocab))
	for tok, id := range m.vocab {
		if raw, ok := byteLevelBytes(tok); ok {
			m.rawVocab[string(raw)] = id
		}
	}
}

// encode appends the ids of one pre-tokenized word: raw bytes for a byte-level
// model, text in the model's alphabet otherwise.
func (m *bpe) encode(word string, out []int32) []int32 {
	if word == "" {
		return out
	}
	if m.ignoreMerges {
		v := m.vocab
		if m.byteLevel {
			v = m.rawVocab
		}
		if id, ok := v[word]; ok {
			return append(out, id)
		}
	}
	if m.cut == "" {
		return m.merged(word, out)
	}
	// A SentencePiece-style model without a pre-tokenizer (Llama 2) takes a whole
	// paragraph as one word. No merge can join the two sides of a "▁" that follows
	// another character (no token holds one), so the parts merge alone as they
	// would together, and each part is a word that the cache may know.
	for word != "" {
		i := len(word) - len(strings.TrimLeft(word, m.cut))
		k := strings.Index(word[i:], m.cut)
		if k < 0 {
			return m.merged(word, out)
		}
		out = m.merged(word[:i+k], out)
		word = word[i+k:]
	}
	return out
}

// merged appends the ids of word after the merges.
func (m *bpe) merged(word string, out []int32) []int32 {
	if ids, ok := m.cache.get(word); ok {
		return append(out, ids...)
	}
	w := wordPool.Get().(*wordBuf)
	w.syms = m.symbols(word, w.syms[:0])
	w.merge(m.merges)
	out = append(out, w.syms...)
	m.cache.put(word, w.syms)
	wordPool.Put(w)
	return out
}

// symbols returns the word's first symbols, as Hugging Face's BPE.merge_word does:
// each character's id; else its <0xNN> byte tokens (byte_fallback); else unk, one
// per run of unknown characters with fuse_unk; else nothing.
func (m *bpe) symbols(word string, syms []int32) []int32 {
	pendingUnk := false
	add := func(unit string, id int32, first, last bool) {
		if (m.prefix != "" && !first) || (m.suffix != "" && last) {
			if !first {
				unit = m.prefix + unit
			}
			if last {
				unit += m.suffix
			}
			id = lookup(m.vocab, unit)
		}
		if id >= 0 {
			if pendingUnk {
				syms, pendingUnk = append(syms, m.unk), false
			}
			syms = append(syms, id)
			return
		}
		if m.byteFallback && m.appendBytes(&syms, unit) {
			return // a pending unk stays pending here, as in Hugging Face
		}
		if m.unk >= 0 {
			if pendingUnk && !m.fuseUnk {
				syms = append(syms, m.unk)
			}
			pendingUnk = true
		}
	}
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			b := word[i]
			add(byteCharString[b], m.byteUnit[b], i == 0, i == len(word)-1)
		}
	} else {
		for i, r := range word {
			n := utf8.RuneLen(r)
			unit := word[i : i+n]
			add(unit, lookup(m.vocab, unit), i == 0, i+n == len(word))
		}
	}
	if pendingUnk {
		syms = append(syms, m.unk)
	}
	return syms
}

// appendBytes appends the <0xNN> tokens of unit's bytes if all exist.
func (m *bpe) appendBytes(syms *[]int32, unit string) bool {
	for i := 0; i < len(unit); i++ {
		if m.byteIDs[unit[i]] < 0 {
			return false
		}
	}
	for i := 0; i < len(unit); i++ {
		*syms = append(*syms, m.byteIDs[unit[i]])
	}
	return true
}

// wordBuf is the scratch space of one merge: symbols as a linked list over their
// first positions, and a heap of candidate merges.
type wordBuf struct {
	syms       []int32
	prev, next []int32
	heap       []candidate
}

var wordPool = sync.Pool{New: func() any { return new(wordBuf) }}

// candidate is a pair of neighbours that a merge could join: the left symbol's
// position, both ids as they were when it was queued, and the merge's rank and id.
type candidate struct {
	rank, pos, left, right, id int32
}

func (c candidate) before(d candidate) bool {
	return c.rank < d.rank || c.rank == d.rank && c.pos < d.pos
}

// merge applies the merges to w.syms in place, Hugging Face's Word::merge_all
// without dropout: pop the lowest-ranked, leftmost candidate; skip it if either
// neighbour has changed since it was queued; else join them and queue the new
// pairs on both sides. O(n log n), so that a whole unsplit paragraph (Llama 2 has
// no pre-tokenizer) costs no more than its words.
func (w *wordBuf) merge(merges map[uint64]merge) {
	n := len(w.syms)
	if n < 2 {
		return
	}
	w.prev, w.next, w.heap = resize(w.prev, n), resize(w.next, n), w.heap[:0]
	for i := range n {
		w.prev[i], w.next[i] = int32(i-1), int32(i+1)
	}
	w.next[n-1] = -1
	for i := 0; i+1 < n; i++ {
		w.queue(merges, int32(i), int32(i+1))
	}
	for len(w.heap) > 0 {
		c := w.pop()
		right := w.next[c.pos]
		if w.syms[c.pos] != c.left || right < 0 || w.syms[right] != c.right {
			continue // stale: a neighbour merged since
		}
		w.syms[c.pos] = c.id
		after := w.next[right]
		w.next[c.pos] = after
		w.syms[right] = -1 // gone; no candidate names -1
		if after >= 0 {
			w.prev[after] = c.pos
		}
		if p := w.prev[c.pos]; p >= 0 {
			w.queue(merges, p, c.pos)
		}
		if after >= 0 {
			w.queue(merges, c.pos, after)
		}
	}
	out := w.syms[:0]
	for i := int32(0); i >= 0; i = w.next[i] {
		out = append(out, w.syms[i])
	}
	w.syms = out
}

func (w *wordBuf) queue(merges map[uint64]merge, i, j int32) {
	mg, ok := merges[pairKey(w.syms[i], w.syms[j])]
	if !ok {
		return
	}
	w.heap = append(w.heap, candidate{mg.rank, i, w.syms[i], w.syms[j], mg.id})
	h := w.heap
	for k := len(h) - 1; k > 0; {
		p := (k - 1) / 2
		if !h[k].before(h[p]) {
			break
		}
		h[k], h[p] = h[p], h[k]
		k = p
	}
}

func (w *wordBuf) pop() candidate {
	h := w.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for k := 0; ; {
		l, r, min := 2*k+1, 2*k+2, k
		if l < len(h) && h[l].before(h[min]) {
			min = l
		}
		if r < len(h) && h[r].before(h[min]) {
			min = r
		}
		if min == k {
			break
		}
		h[k], h[min] = h[min], h[k]
		k = min
	}
	w.heap = h
	return top
}

func resize(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}
