package data

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// LoaderConfig is how documents are ordered and packed.
type LoaderConfig struct {
	SeqLen  int    // tokens per sequence; >= 2
	Shuffle bool   // a fresh permutation of the documents every epoch; false: corpus order
	Seed    uint64 // with the epoch, seeds the permutation
}

// Validate reports a config that cannot pack.
func (c LoaderConfig) Validate() error {
	if c.SeqLen < 2 {
		return fmt.Errorf("data: seq_len must be >= 2, got %d", c.SeqLen)
	}
	return nil
}

// Cursor is a position in the document stream: the epoch, the index into that
// epoch's order of documents, and the token offset in that document. It is
// what a checkpoint stores to resume the data exactly.
type Cursor struct {
	Epoch  int `json:"epoch"`
	Doc    int `json:"doc"`
	Offset int `json:"offset"`
}

// Loader packs the token stream of a corpus into sequences; see the package
// doc for the rule. The stream, and so every batch, is a function of the
// corpus, the tokenizer, the config and the starting cursor only.
//
// A Loader reads one document at a time and caches the tokens of the last one
// read. It is not safe for concurrent use.
type Loader struct {
	corpus *Corpus
	tok    Tokenizer
	cfg    LoaderConfig
	cur    Cursor // where the next sequence starts

	orders  map[int][]int // epoch -> document order; only epochs next to the cursor's
	ident   []int         // the order when not shuffling
	cached  int           // corpus index of toks; -1: none
	toks    []int32
	scratch []int32 // [L+1] the stream of the sequence being packed
	segs    []int32 // [L+1] segment id of each stream token
}

// NewLoader returns a loader at the start of epoch 0. It reads no document.
func NewLoader(c *Corpus, tok Tokenizer, cfg LoaderConfig) (*Loader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if c == nil || c.Len() == 0 {
		return nil, errors.New("data: loader: corpus has no documents")
	}
	if tok == nil {
		return nil, errors.New("data: loader: no tokenizer")
	}
	l := &Loader{
		corpus:  c,
		tok:     tok,
		cfg:     cfg,
		orders:  map[int][]int{},
		cached:  -1,
		scratch: make([]int32, cfg.SeqLen+1),
		segs:    make([]int32, cfg.SeqLen+1),
	}
	if !cfg.Shuffle {
		l.ident = make([]int, c.Len())
		for i := range l.ident {
			l.ident[i] = i
		}
	}
	return l, nil
}

// Cursor is where the next call to Next starts.
func (l *Loader) Cursor() Cursor { return l.cur }

// Seek moves the loader to c, typically a Cursor saved earlier by a loader of
// the same corpus, tokenizer and config; the batches that follow are those
// that loader produced after it. An offset past the document's end is an
// error, so Seek may read that one document.
func (l *Loader) Seek(c Cursor) error {
	n := l.corpus.Len()
	switch {
	case c.Epoch < 0:
		return fmt.Errorf("data: seek %+v: negative epoch", c)
	case c.Doc < 0 || c.Doc >= n:
		return fmt.Errorf("data: seek %+v: doc out of range [0, %d)", c, n)
	case c.Offset < 0:
		return fmt.Errorf("data: seek %+v: negative offset", c)
	}
	if c.Offset > 0 {
		toks, err := l.tokens(c)
		if err != nil {
			return fmt.Errorf("data: seek %+v: %w", c, err)
		}
		if c.Offset >= len(toks) {
			return fmt.Errorf("data: seek %+v: offset past the end of %s (%d tokens)", c, l.doc(c).Name, len(toks))
		}
	}
	l.cur = c
	return nil
}

// Next packs the next sequence: the L+1 stream tokens from the cursor, of
// which it consumes L (the last one starts the next sequence too).
func (l *Loader) Next() (Batch, error) {
	L := l.cfg.SeqLen
	stream, segs := l.scratch, l.segs
	b := newBatch(L)
	p, next := l.cur, l.cur
	seg := int32(-1)
	empty := 0 // consecutive documents without tokens
	for n := 0; n <= L; {
		toks, err := l.tokens(p)
		if err != nil {
			return Batch{}, fmt.Errorf("data: next batch: %w", err)
		}
		if p.Offset >= len(toks) { // a document with no tokens
			// 2n consecutive positions cover a whole epoch.
			if empty++; empty > 2*l.corpus.Len() {
				return Batch{}, errors.New("data: next batch: no document has any tokens")
			}
			p = l.advance(p)
			continue
		}
		empty = 0
		take := min(len(toks)-p.Offset, L+1-n)
		if n+take == L+1 { // the last piece: its stream[L] starts the next sequence
			next = Cursor{Epoch: p.Epoch, Doc: p.Doc, Offset: p.Offset + L - n}
		}
		seg++
		copy(stream[n:], toks[p.Offset:p.Offset+take])
		for k := range take {
			segs[n+k] = seg
			if n+k < L {
				b.Pos[n+k] = int32(k)
			}
		}
		n += take
		if p.Offset += take; p.Offset == len(toks) {
			p = l.advance(p)
		}
	}
	copy(b.Tokens, stream[:L])
	copy(b.Targets, stream[1:])
	copy(b.Doc, segs[:L])
	for i := range L {
		if segs[i] == segs[i+1] {
			b.Weight[i] = 1
		}
	}
	l.cur = next
	return b, nil
}

// advance is the start of the document after p's, in the next epoch after the
// last one.
func (l *Loader) advance(p Cursor) Cursor {
	p.Doc, p.Offset = p.Doc+1, 0
	if p.Doc == l.corpus.Len() {
		p.Epoch, p.Doc = p.Epoch+1, 0
	}
	return p
}

// doc is the document at p.
func (l *Loader) doc(p Cursor) *DocRef {
	return &l.corpus.docs[l.order(p.Epoch)[p.Doc]]
}

// tokens returns the tokens of the document at p, reading it unless it is the
// cached one.
func (l *Loader) tokens(p Cursor) ([]int32, error) {
	i := l.order(p.Epoch)[p.Doc]
	if i == l.cached {
		return l.toks, nil
	}
	d := &l.corpus.docs[i]
	text, err := d.read()
	if err != nil {
		return nil, fmt.Errorf("epoch %d, doc %d: read document %d (%s): %w", p.Epoch, p.Doc, i, d.Name, err)
	}
	l.cached, l.toks = i, l.tok.Encode(text)
	return l.toks, nil
}

// order returns the document order of an epoch: the corpus order, or a
// permutation drawn from PCG(Seed, epoch). It keeps the orders of the epochs
// next to the requested one, since a sequence that spans an epoch boundary
// asks for both.
func (l *Loader) order(epoch int) []int {
	if !l.cfg.Shuffle {
		return l.ident
	}
	if o, ok := l.orders[epoch]; ok {
		return o
	}
	for e := range l.orders {
		if e < epoch-1 || e > epoch+1 {
			delete(l.orders, e)
		}
	}
	o := rand.New(rand.NewPCG(l.cfg.Seed, uint64(epoch))).Perm(l.corpus.Len())
	l.orders[epoch] = o
	return o
}
