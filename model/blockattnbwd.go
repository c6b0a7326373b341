package model

import (
	"context"
	"sync"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
)

// The backward of blockwise attention (blockattn.go): per query block, the
// delta and the upstream gradient; per visible (query block, key block) pair, one
// AttnBlockGrad execution adding into dq and into that query block's dk, dv partials.

// AttnBackward holds what the backward of one shard of queries needs.
type AttnBackward struct {
	b        *BlockAttention
	qb       []block
	qs, dos  []*tensors.Tensor // per query block: q [Bq, H, Dh], do [Bq, H, Dh]
	lse, dlt []*tensors.Tensor // per query block: lse, delta [Bq, KH, G]
	DQ       *tensors.Tensor   // [Lq, H, Dh], accumulated by Grad
}

// BeginBackward prepares the backward of queries q with output o, its lse and upstream do [Lq, H*Dh].
func (b *BlockAttention) BeginBackward(q *tensors.Tensor, qt Tokens, o, lse, do *tensors.Tensor) (*AttnBackward, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	c := b.P.Config()
	hd := c.HeadDimension()
	bw := &AttnBackward{b: b, qb: b.cut(qt, b.BlockQ), DQ: host.NewZeros(StateDType(q.DType()), q.Shape().Dimensions...)}
	for _, blk := range bw.qb {
		dob := host.SliceRows(do, blk.start, blk.end)
		delta, err := b.P.AttnDelta(dob, host.SliceRows(o, blk.start, blk.end))
		if err != nil {
			return nil, err
		}
		n := blk.end - blk.start
		bw.qs = append(bw.qs, host.SliceRows(q, blk.start, blk.end))
		bw.dos = append(bw.dos, host.ReshapeCopy(dob, n, c.Heads, hd))
		bw.lse = append(bw.lse, host.SliceRows(lse, blk.start, blk.end))
		bw.dlt = append(bw.dlt, delta)
	}
	return bw, nil
}

// Grad adds the contribution of keys (k, v, kt) to DQ and returns their dk, dv
// [Lk, KH, Dh]: the bits of GradParts then SumOnto(nil, nil), without the
// partials. Each key block's rows of dk, dv take the query blocks' shares in
// SumOnto's order (the last query block first) as they are computed: beyond
// the inputs and outputs, the memory is the key blocks (a copy of k, v) and the
// block products in flight, whatever the length, where the partials were one
// [Lk, KH, Dh] pair per query block.
func (bw *AttnBackward) Grad(k, v *tensors.Tensor, kt Tokens) (dk, dv *tensors.Tensor, err error) {
	kbs, err := bw.b.cutKV(k, v, kt)
	if err != nil {
		return nil, nil, err
	}
	dk = host.NewZeros(StateDType(k.DType()), k.Shape().Dimensions...)
	dv = host.NewZeros(StateDType(v.DType()), v.Shape().Dimensions...)
	turns := make([]turnstile, len(kbs))
	for j := range turns {
		turns[j].init(len(bw.qb))
	}
	err = bw.b.forEachQBlock(len(bw.qb), func(i int) error {
		qb := bw.qb[i]
		for j, kb := range kbs {
			mask, skip := bw.b.pairMask(qb, kb.block)
			if skip {
				turns[j].pass(i, nil)
				continue
			}
			dq, dkb, dvb, err := bw.b.P.AttnBlockGrad(bw.qs[i], kb.k, kb.v, mask, bw.dos[i], bw.lse[i], bw.dlt[i])
			if err != nil {
				for j2 := j; j2 < len(kbs); j2++ { // let the blocks before go on
					turns[j2].pass(i, nil)
				}
				return err
			}
			host.AddRows(bw.DQ, qb.start, dq) // this query block's rows: only this goroutine's
			turns[j].pass(i, func() {
				host.AddRows(dk, kb.start, dkb)
				host.AddRows(dv, kb.start, dvb)
			})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return dk, dv, nil
}

// turnstile orders the query blocks' additions into one key block's rows:
// from the last query block to the first (forEachQBlock starts them in that
// order, so the one waited for is always under way or done). A block that
// sees none of the key block's keys passes without waiting.
type turnstile struct {
	mu     sync.Mutex
	cond   sync.Cond
	next   int    // the query block whose addition comes next; -1: all done
	passed []bool // blocks that passed before their turn came
}

func (t *turnstile) init(n int) {
	t.cond.L, t.next, t.passed = &t.mu, n-1, make([]bool, n)
}

// pass is query block i's turn: add (nil: nothing to add) runs once every
// later block has passed, and no other block of this key block runs beside it.
func (t *turnstile) pass(i int, add func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if add == nil && t.next != i {
		t.passed[i] = true
		return
	}
	for t.next != i {
		t.cond.Wait()
	}
	if add != nil {
		add()
	}
	for t.next--; t.next >= 0 && t.passed[t.next]; t.next-- {
	}
	t.cond.Broadcast()
}

// GradParts is the costly half of Grad: it adds the contribution of keys (k, v,
// kt) to DQ and returns their dk, dv one partial per query block, for SumOnto.
func (bw *AttnBackward) GradParts(k, v *tensors.Tensor, kt Tokens) (*GradParts, error) {
	kbs, err := bw.b.cutKV(k, v, kt)
	if err != nil {
		return nil, err
	}
	// Each query block adds into its own dk, dv partials (one per query block, so
	// concurrent blocks never share one); SumOnto adds them up in block order.
	parts := &GradParts{k: k, dk: make([]*tensors.Tensor, len(bw.qb)), dv: make([]*tensors.Tensor, len(bw.qb))}
	err = bw.b.forEachQBlock(len(bw.qb), func(i int) error {
		qb := bw.qb[i]
		for _, kb := range kbs {
			mask, skip := bw.b.pairMask(qb, kb.block)
			if skip {
				continue
			}
			dq, dkb, dvb, err := bw.b.P.AttnBlockGrad(bw.qs[i], kb.k, kb.v, mask, bw.dos[i], bw.lse[i], bw.dlt[i])
			if err != nil {
				return err
			}
			if parts.dk[i] == nil {
				parts.dk[i] = host.NewZeros(StateDType(k.DType()), k.Shape().Dimensions...)
				parts.dv[i] = host.NewZeros(StateDType(v.DType()), v.Shape().Dimensions...)
			}
			host.AddRows(bw.DQ, qb.start, dq)
			host.AddRows(parts.dk[i], kb.start, dkb)
			host.AddRows(parts.dv[i], kb.start, dvb)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return parts, nil
}

// GradParts are the dk, dv partials of one key shard, one per query block (nil
// where the block sees none of the keys).
type GradParts struct {
	k      *tensors.Tensor // for the shape and dtype
	dk, dv []*tensors.Tensor
}

// SumOnto adds the partials to dk, dv one query block after the other, from
// the last block to the first, and returns the sums (dk, dv are updated in
// place; nil starts from zeros). Because the order is fixed, the queries of one
// shard may be cut at a query block boundary into a head and a tail, their
// GradParts computed apart (even on different workers), and the head's summed
// onto the tail's: the bits are those of one Grad over the whole shard. (Last
// first, so that the head, whose queries see the fewest keys, can be the part
// that moves: parallel.Balancer.)
func (p *GradParts) SumOnto(dk, dv *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor) {
	if dk == nil {
		dk = host.NewZeros(StateDType(p.k.DType()), p.k.Shape().Dimensions...)
		dv = host.NewZeros(StateDType(p.k.DType()), p.k.Shape().Dimensions...)
	}
	for i := len(p.dk) - 1; i >= 0; i-- {
		if p.dk[i] != nil {
			host.AddInto(dk, p.dk[i])
			host.AddInto(dv, p.dv[i])
		}
	}
	return dk, dv
}

// Backward is the backward of a shard's attention to its own keys: dq, dk, dv.
func (b *BlockAttention) Backward(ctx context.Context, q, k, v *tensors.Tensor, t Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	bw, err := b.BeginBackward(q, t, o, lse, do)
	if err != nil {
		return nil, nil, nil, err
	}
	dk, dv, err = bw.Grad(k, v, t)
	if err != nil {
		return nil, nil, nil, err
	}
	return bw.DQ, dk, dv, nil
}
