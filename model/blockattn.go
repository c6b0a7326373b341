package model

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/host"
)

// Blockwise attention over host tensors: queries cut into blocks of BlockQ rows,
// keys into blocks of BlockK rows, one AttnBlock execution per visible pair. No
// [L, L] tensor exists anywhere. The key side may be this worker's own tokens or a
// block visiting from another worker (ring attention folds each visitor in turn).

// Tokens are the per-token metadata of a shard: position within its document and
// document id (see data.Batch). Together they define the mask.
type Tokens struct {
	Pos, Doc []int32
}

// Slice returns tokens [start, end).
func (t Tokens) Slice(start, end int) Tokens { return Tokens{t.Pos[start:end], t.Doc[start:end]} }

// Len is the number of tokens.
func (t Tokens) Len() int { return len(t.Pos) }

// visibility says which keys of kt some query of qt may attend to: any (some
// pair is visible, so the pair must be computed) and all (every pair is, so it
// needs no mask). For a document present in both, a key is visible to the
// queries whose position is not before its own.
func visibility(qt, kt Tokens) (anyVis, allVis bool) {
	return visibilityBy(qt.Pos, qt.Doc, kt.Pos, kt.Doc)
}

// visibilityBy is visibility with any key in place of the document id (under
// shifted sparse attention, document and group): a key is visible to the
// queries of the same key whose position is not before its own.
func visibilityBy[K comparable](qpos []int32, qkey []K, kpos []int32, kkey []K) (anyVis, allVis bool) {
	type span struct{ lo, hi int32 }
	q := map[K]span{}
	for i, d := range qkey {
		p := qpos[i]
		if s, ok := q[d]; ok {
			q[d] = span{min(s.lo, p), max(s.hi, p)}
		} else {
			q[d] = span{p, p}
		}
	}
	allVis = len(q) == 1
	for j, d := range kkey {
		s, ok := q[d]
		if !ok {
			allVis = false
			continue
		}
		if kpos[j] <= s.hi {
			anyVis = true
		}
		if kpos[j] > s.lo {
			allVis = false
		}
	}
	return anyVis, anyVis && allVis
}

// BlockAttention is the blockwise attention schedule of one worker.
//
// Query blocks are independent, so up to Parallel of them run at once (each a
// chain of executions over the key blocks): the backend alone keeps only about
// one of two cores busy on these block-sized operations. 0 means GOMAXPROCS.
//
// ShiftGroups > 0 is shifted sparse attention with groups of that many positions
// (even; s2attn.go): for training only. It shifts the groups of the model's
// second half of query heads. When P computes only some of the model's heads
// (Ulysses: SP rank i computes heads from i*H/SP on), HeadBase and ModelHeads
// say which: P's head h is the model's head HeadBase+h of ModelHeads (0: P's
// own head count).
type BlockAttention struct {
	P                    *Pieces
	BlockQ, BlockK       int
	Parallel             int
	ShiftGroups          int
	HeadBase, ModelHeads int
}

// check reports settings the schedule cannot run with.
func (b *BlockAttention) check() error {
	if b.BlockQ < 1 || b.BlockK < 1 {
		return fmt.Errorf("model: attention block sizes must be >= 1, got %d x %d", b.BlockQ, b.BlockK)
	}
	if g := b.ShiftGroups; g != 0 && (g < 2 || g%2 != 0) {
		return fmt.Errorf("model: shift groups must be 0 (full attention) or even and >= 2, got %d", g)
	}
	return nil
}

// forEachQBlock runs fn(i) for every query block index, up to b.Parallel at a
// time, the blocks with the most work (the last, under a causal mask) first.
// It returns the first error.
func (b *BlockAttention) forEachQBlock(n int, fn func(i int) error) error {
	workers := b.Parallel
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	if workers <= 1 {
		for i := n - 1; i >= 0; i-- {
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	var next atomic.Int64
	next.Store(int64(n))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(-1))
				if i < 0 || errs[w] != nil {
					return
				}
				errs[w] = fn(i)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

type kvBlock struct {
	block
	k, v *tensors.Tensor
}

// cutKV cuts keys and values into blocks, ready to be read by concurrent executions.
func (b *BlockAttention) cutKV(k, v *tensors.Tensor, kt Tokens) ([]kvBlock, error) {
	var out []kvBlock
	for _, kb := range b.cut(kt, b.BlockK) {
		blk := kvBlock{kb, host.SliceRows(k, kb.start, kb.end), host.SliceRows(v, kb.start, kb.end)}
		if err := b.P.Share(blk.k, blk.v, blk.pos, blk.doc); err != nil {
			return nil, err
		}
		if blk.grp != nil {
			if err := b.P.Share(blk.grp); err != nil {
				return nil, err
			}
		}
		out = append(out, blk)
	}
	return out, nil
}

type block struct {
	start, end int
	tok        Tokens
	pos, doc   *tensors.Tensor
	grp        *tensors.Tensor // under shifted sparse attention: [2, B] group ids, else nil
	keys       [2][]docGroup   // the same, per half, for visibilityBy
}

// pairMask is the mask a (query block, key block) pair needs: skip when no key is
// visible, nil when all are.
func (b *BlockAttention) pairMask(qb, kb block) (mask *PairMask, skip bool) {
	if b.ShiftGroups > 0 {
		return b.s2PairMask(qb, kb)
	}
	anyVis, allVis := visibility(qb.tok, kb.tok)
	switch {
	case !anyVis:
		return nil, true
	case allVis:
		return nil, false
	}
	return &PairMask{QPos: qb.pos, KPos: kb.pos, QDoc: qb.doc, KDoc: kb.doc}, false
}

// cut cuts tokens into blocks of size (the last may be shorter).
func (b *BlockAttention) cut(t Tokens, size int) []block {
	var bs []block
	for s := 0; s < t.Len(); s += size {
		e := min(s+size, t.Len())
		tk := t.Slice(s, e)
		blk := block{start: s, end: e, tok: tk, pos: host.Int32s(tk.Pos), doc: host.Int32s(tk.Doc)}
		if b.ShiftGroups > 0 {
			blk.grp, blk.keys = s2Groups(tk, b.ShiftGroups)
		}
		bs = append(bs, blk)
	}
	return bs
}

// AttnForward is the running state of the attention of one shard of queries.
type AttnForward struct {
	b      *BlockAttention
	q      *tensors.Tensor // [Lq, H, Dh]
	qb     []block
	qs     []*tensors.Tensor // q rows of each block
	states []AttnState
}

// Begin starts the attention of queries q [Lq, H, Dh] with tokens qt.
func (b *BlockAttention) Begin(q *tensors.Tensor, qt Tokens) (*AttnForward, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	c := b.P.Config()
	g := c.Heads / c.KVHeads
	f := &AttnForward{b: b, q: q, qb: b.cut(qt, b.BlockQ)}
	sd := StateDType(q.DType()) // the online softmax's running state: float32 for bf16 operands
	for _, blk := range f.qb {
		n := blk.end - blk.start
		f.qs = append(f.qs, host.SliceRows(q, blk.start, blk.end))
		f.states = append(f.states, AttnState{
			M:   host.NewFull(sd, maskFill, c.KVHeads, g, n),
			L:   host.NewZeros(sd, c.KVHeads, g, n),
			Acc: host.NewZeros(sd, c.KVHeads, g, n, c.HeadDimension()),
		})
	}
	return f, nil
}

// Fold attends every query to the keys k, v [Lk, KH, Dh] with tokens kt.
func (f *AttnForward) Fold(k, v *tensors.Tensor, kt Tokens) error {
	kbs, err := f.b.cutKV(k, v, kt)
	if err != nil {
		return err
	}
	return f.b.forEachQBlock(len(f.qb), func(i int) error {
		for _, kb := range kbs {
			mask, skip := f.b.pairMask(f.qb[i], kb.block)
			if skip {
				continue
			}
			s, err := f.b.P.AttnBlock(f.qs[i], kb.k, kb.v, mask, f.states[i])
			if err != nil {
				return err
			}
			f.states[i] = s
		}
		return nil
	})
}

// Finish returns o [Lq, H*Dh] and lse [Lq, KH, G].
func (f *AttnForward) Finish() (o, lse *tensors.Tensor, err error) {
	c := f.b.P.Config()
	lq := f.q.Shape().Dimensions[0]
	o = host.NewZeros(f.q.DType(), lq, c.Heads*c.HeadDimension())
	lse = host.NewZeros(StateDType(f.q.DType()), lq, c.KVHeads, c.Heads/c.KVHeads)
	for i, qb := range f.qb {
		ob, lb, err := f.b.P.AttnFinish(f.states[i])
		if err != nil {
			return nil, nil, err
		}
		host.SetRows(o, qb.start, ob)
		host.SetRows(lse, qb.start, lb)
	}
	return o, lse, nil
}

// Forward is the attention of a shard's queries to its own keys.
func (b *BlockAttention) Forward(ctx context.Context, q, k, v *tensors.Tensor, t Tokens) (o, lse *tensors.Tensor, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	f, err := b.Begin(q, t)
	if err != nil {
		return nil, nil, err
	}
	if err := f.Fold(k, v, t); err != nil {
		return nil, nil, err
	}
	return f.Finish()
}
