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

	// Lanes is how many documents are read side by side. 0 or 1: one stream.
	// K > 1: each epoch's order is dealt round-robin to K lanes, each packed
	// as its own stream, and Next takes a sequence from each lane in turn, so
	// that consecutive sequences come from different documents. More lanes
	// than documents is allowed and means one lane per document: the count is
	// capped at the corpus size, since an extra lane would have no document.
	Lanes int

	// Whole keeps every document of at most SeqLen tokens in one sequence: one
	// that does not fit in what is left of a sequence starts the next one, and
	// the rest is padding (its own document, no loss). Longer documents are
	// cut as always. For tasks whose answer needs the whole document (passkey
	// retrieval: a cut sample has the key in one sequence and the question in
	// the next), at the price of the padding.
	Whole bool

	// Prefetch is how many documents a lane tokenizes ahead, in the
	// background, as it starts one (prefetch.go); 0: each when it is needed.
	// Workers bounds the goroutines doing it (0: GOMAXPROCS).
	Prefetch, Workers int
	// TokenCache is the folder of the on-disk token cache (tokencache.go),
	// used with tokenizers that have a fingerprint; "": no cache.
	TokenCache string
}

// Validate reports a config that cannot pack.
func (c LoaderConfig) Validate() error {
	if c.SeqLen < 2 {
		return fmt.Errorf("data: seq_len must be >= 2, got %d", c.SeqLen)
	}
	if c.Lanes < 0 {
		return fmt.Errorf("data: lanes must be >= 0 (0 or 1: one stream), got %d", c.Lanes)
	}
	if c.Prefetch < 0 || c.Workers < 0 {
		return fmt.Errorf("data: prefetch (%d) and workers (%d) must be >= 0", c.Prefetch, c.Workers)
	}
	return nil
}

// Loader packs the token stream of a corpus into sequences; see the package
// doc for the rule. The stream, and so every batch, is a function of the
// corpus, the tokenizer, the config and the starting cursor only.
//
// With K lanes, lane j packs the documents at indices j, j+K, j+2K, ... of
// each epoch's order, epoch after epoch (each lane passes into its next
// epoch on its own), and the n-th call to Next returns the next sequence of
// lane n mod K.
//
// A Loader reads one document at a time and caches, per lane, the tokens of
// the last document that lane read. It is not safe for concurrent use.
type Loader struct {
	corpus *Corpus
	tok    Tokenizer
	cfg    LoaderConfig
	enc    *encoder    // a document's tokens: spans, affixes, the cache
	pre    *prefetcher // nil: Prefetch 0
	lanes  []lane      // [K], K = min(max(Lanes, 1), corpus size)
	next   int         // the lane of the next sequence: sequences returned so far, mod K

	orders  map[int][]int // epoch -> document order; only epochs some lane may still read
	ident   []int         // the order when not shuffling
	empty   []bool        // corpus index -> found to have no tokens; nil until one is
	nEmpty  int           // true entries of empty
	scratch []int32       // [L+1] the stream of the sequence being packed
	segs    []int32       // [L+1] segment id of each stream token
	loss    []bool        // [L+1] whether the loss counts each stream token
}

// lane is one stream of documents and its reading state.
type lane struct {
	pos    LaneCursor // where its next sequence starts
	cached int        // corpus index of toks; -1: none
	toks   []int32
	loss   []bool // [len(toks)] whether the loss counts each token; nil: every one
}

// NewLoader returns a loader at the start of epoch 0: lane j at the j-th
// document of the order. It reads no document.
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
		lanes:   make([]lane, min(max(cfg.Lanes, 1), c.Len())),
		orders:  map[int][]int{},
		scratch: make([]int32, cfg.SeqLen+1),
		segs:    make([]int32, cfg.SeqLen+1),
		loss:    make([]bool, cfg.SeqLen+1),
		enc:     newEncoder(tok, cfg.TokenCache),
	}
	if cfg.Prefetch > 0 {
		l.pre = newPrefetcher(l.enc, cfg.Workers)
	}
	for j := range l.lanes {
		l.lanes[j] = lane{pos: LaneCursor{Doc: j}, cached: -1}
	}
	if !cfg.Shuffle {
		l.ident = make([]int, c.Len())
		for i := range l.ident {
			l.ident[i] = i
		}
	}
	return l, nil
}

// Next packs the next sequence, from lane n mod K after n sequences.
func (l *Loader) Next() (Batch, error) {
	j := l.next
	b, pos, err := l.pack(&l.lanes[j], j)
	if err != nil {
		if len(l.lanes) > 1 {
			return Batch{}, fmt.Errorf("data: next batch: lane %d: %w", j, err)
		}
		return Batch{}, fmt.Errorf("data: next batch: %w", err)
	}
	l.lanes[j].pos = pos
	l.next = (j + 1) % len(l.lanes)
	return b, nil
}

// pack packs lane j's next sequence: the L+1 tokens of its stream from its
// position, of which it consumes L (the last one starts the lane's next
// sequence too). It returns the sequence and the lane's position after it.
func (l *Loader) pack(ln *lane, j int) (Batch, LaneCursor, error) {
	L := l.cfg.SeqLen
	stream, segs, loss := l.scratch, l.segs, l.loss
	b := newBatch(L)
	p, next := ln.pos, ln.pos
	seg := int32(-1)
	run := 0 // consecutive documents without tokens
	for n := 0; n <= L; {
		toks, mask, err := l.tokens(ln, p)
		if err != nil {
			return Batch{}, LaneCursor{}, err
		}
		if p.Offset >= len(toks) { // a document with no tokens
			run++
			if err := l.noTokens(j, p, run); err != nil {
				return Batch{}, LaneCursor{}, err
			}
			p = l.advance(p)
			continue
		}
		run = 0
		if l.cfg.Whole && p.Offset == 0 && n > 0 && len(toks) <= L && n+len(toks) > L {
			// It would be cut: pad, and it starts the next sequence.
			seg++
			for k := n; k <= L; k++ {
				stream[k], segs[k], loss[k] = 0, seg, false
				if k < L {
					b.Pos[k] = int32(k - n)
				}
			}
			next = p
			break
		}
		take := min(len(toks)-p.Offset, L+1-n)
		if n+take == L+1 { // the last piece: its stream[L] starts the next sequence
			next = LaneCursor{Epoch: p.Epoch, Doc: p.Doc, Offset: p.Offset + L - n}
		}
		seg++
		copy(stream[n:], toks[p.Offset:p.Offset+take])
		for k := range take {
			segs[n+k] = seg
			loss[n+k] = mask == nil || mask[p.Offset+k]
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
		if segs[i] == segs[i+1] && loss[i+1] {
			b.Weight[i] = 1
		}
	}
	return b, next, nil
}

// advance is the start of the lane's document after p's: K further along the
// order, or the lane's first one (index j = p.Doc mod K) of the next epoch.
func (l *Loader) advance(p LaneCursor) LaneCursor {
	K := len(l.lanes)
	p.Doc, p.Offset = p.Doc+K, 0
	if p.Doc >= l.corpus.Len() {
		p.Epoch, p.Doc = p.Epoch+1, p.Doc%K
	}
	return p
}

// noTokens records that the document at p, run-th in a row of lane j without
// tokens, has none (only a tokenizer that encodes some text to nothing can
// cause that), and returns an error when the lane can never fill a sequence:
// no document has tokens, or, in corpus order, the lane always reads the same
// documents and has now seen each of them empty.
func (l *Loader) noTokens(j int, p LaneCursor, run int) error {
	n, K := l.corpus.Len(), len(l.lanes)
	if l.empty == nil {
		l.empty = make([]bool, n)
	}
	if i := l.order(p.Epoch)[p.Doc]; !l.empty[i] {
		l.empty[i], l.nEmpty = true, l.nEmpty+1
	}
	if l.nEmpty == n {
		return errors.New("no document has any tokens")
	}
	if share := (n - j + K - 1) / K; !l.cfg.Shuffle && run >= share {
		return fmt.Errorf("the lane's documents (corpus indices %d, %d+%d, ... below %d) have no tokens; use fewer lanes", j, j, K, n)
	}
	return nil
}

// doc is the document at p.
func (l *Loader) doc(p LaneCursor) *DocRef {
	return &l.corpus.docs[l.order(p.Epoch)[p.Doc]]
}

// tokens returns the tokens of the document at p and whether the loss counts
// each (nil: every one), reading it unless it is the one the lane has cached.
func (l *Loader) tokens(ln *lane, p LaneCursor) ([]int32, []bool, error) {
	i := l.order(p.Epoch)[p.Doc]
	if i == ln.cached {
		return ln.toks, ln.loss, nil
	}
	d := &l.corpus.docs[i]
	var toks []int32
	var loss []bool
	var err error
	if l.pre == nil {
		toks, loss, err = l.enc.document(d)
	} else {
		toks, loss, err = l.pre.take(i, d)
		l.prefetch(p)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("epoch %d, doc %d: read document %d (%s): %w", p.Epoch, p.Doc, i, d.Name, err)
	}
	ln.toks, ln.loss, ln.cached = toks, loss, i
	return ln.toks, ln.loss, nil
}

// order returns the document order of an epoch: the corpus order, or a
// permutation drawn from PCG(Seed, epoch). It keeps the orders of the epochs
// from the earliest one a lane is in: lanes pass into their next epochs at
// different times, and a sequence that spans an epoch boundary asks for both.
func (l *Loader) order(epoch int) []int {
	if !l.cfg.Shuffle {
		return l.ident
	}
	if o, ok := l.orders[epoch]; ok {
		return o
	}
	first := epoch
	for _, ln := range l.lanes {
		first = min(first, ln.pos.Epoch)
	}
	for e := range l.orders {
		if e < first {
			delete(l.orders, e)
		}
	}
	o := rand.New(rand.NewPCG(l.cfg.Seed, uint64(epoch))).Perm(l.corpus.Len())
	l.orders[epoch] = o
	return o
}
