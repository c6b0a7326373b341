package parallel

import (
	"context"
	"sync/atomic"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// RingAttention is attention over a sequence sharded across the SP ranks of a
// ring. Each rank holds the queries, keys and values of its own tokens; the key
// and value blocks travel around the ring, and each rank folds every visiting
// block into its queries' online softmax (model.AttnForward) while the next one
// is already in flight. In backward the blocks travel again, each carrying the
// dK and dV accumulated for it so far, and after SP steps they are back home.
//
// With a Balancer, a stage around the ring (ring_balance.go) may hand the first
// of a rank's query blocks to the next rank, which computes them along with its
// own and sends the results back; the results are bitwise the same.
//
// Every rank must call Forward and Backward in the same order, and either all
// ranks balance or none: the call counter is part of the message tags.
type RingAttention struct {
	Attn    *model.BlockAttention
	T       Transport
	Mesh    Mesh
	Wait    *WaitClock // time blocked on a block not here yet (may be nil)
	Balance *Balancer  // nil: every rank computes its own queries
	n       int        // calls so far, for tags
	waited  atomic.Int64
}

// forwardStage is work done around the ring's forward at the points the loop
// names, such as computing another rank's queries. It must leave the order in
// which the ring folds blocks into this rank's accumulator as it is.
type forwardStage interface {
	// begin starts the online softmax of the query rows this rank keeps.
	begin(ctx context.Context, q *tensors.Tensor, tok model.Tokens) (*model.AttnForward, error)
	// visit sees the block held at step s before this rank folds it in.
	visit(ctx context.Context, s int, kv kvMsg) error
	// finish makes the shard's o and lse from those of the rows kept.
	finish(ctx context.Context, o, lse *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor, error)
}

// backwardStage is the same around the ring's backward. Beyond visiting, it
// decides how the dK, dV sum of each block is carried on, so that what it adds
// lands in the place of that sum the unbalanced ring would give it.
type backwardStage interface {
	// beginBackward starts the backward of the query rows this rank keeps.
	beginBackward(ctx context.Context, q, o, lse, do *tensors.Tensor, tok model.Tokens) (*model.AttnBackward, error)
	visit(ctx context.Context, s int, kv kvMsg) error
	// sumBefore is what the ranks before added to the held block, from the
	// message that brought it; homeSum is the same for this rank's own block
	// once it is back.
	sumBefore(msg []*tensors.Tensor) []*tensors.Tensor
	homeSum(msg []*tensors.Tensor) []*tensors.Tensor
	// carry is the message that takes the held block's sum on to the next rank,
	// and sumSpecs what the message received at step s holds.
	carry(dk, dv *tensors.Tensor, before []*tensors.Tensor) []*tensors.Tensor
	sumSpecs(s int, grad []Spec) []Spec
	// finishBackward makes the shard's dq from that of the rows kept.
	finishBackward(ctx context.Context, dq *tensors.Tensor) (*tensors.Tensor, error)
}

// Forward: this rank's queries q [Lw, H, Dh] against every rank's keys and
// values (k, v [Lw, KH, Dh] here) -> o [Lw, H*Dh], lse [Lw, KH, G].
// Shards must have equal lengths (zigzag guarantees it).
func (r *RingAttention) Forward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens) (o, lse *tensors.Tensor, err error) {
	r.n++
	var st forwardStage = plainRing{r.Attn}
	if r.balancing() {
		st = r.balanceForward(ctx, k, v, tok)
	}
	f, err := st.begin(ctx, q, tok)
	if err != nil {
		return nil, nil, err
	}
	cur := newKV(k, v, tok)
	for s := range r.Mesh.SP {
		var wait func() ([]*tensors.Tensor, error)
		if s < r.Mesh.SP-1 { // the next block is in flight while this one is computed
			wait = r.exchange(ctx, msgKV, s, cur.tensors(), kvSpecs(cur))
		}
		if err := st.visit(ctx, s, cur); err != nil {
			return nil, nil, err
		}
		if err := f.Fold(cur.k, cur.v, cur.tok); err != nil {
			return nil, nil, err
		}
		if wait != nil {
			ts, err := wait()
			if err != nil {
				return nil, nil, err
			}
			cur = kvFrom(ts)
		}
	}
	if o, lse, err = f.Finish(); err != nil {
		return nil, nil, err
	}
	return st.finish(ctx, o, lse)
}

// Backward: given o, lse and do [Lw, H*Dh] of this rank's queries, returns dq for
// them and dk, dv for this rank's own keys and values, summed over every rank's
// queries.
//
// At step s this rank holds the block that started s ranks back. While it
// computes that block's share of dK, dV, the next block is on its way, and so is
// the sum of what the ranks before added to this block; the new sum then goes on
// to the next rank in the background. After SP steps each block's sum is home.
// A rank's share is its query blocks' partials summed in
// model.GradParts.SumOnto's order, which a balancing stage keeps.
func (r *RingAttention) Backward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error) {
	r.n++
	var st backwardStage = plainRing{r.Attn}
	if r.balancing() {
		st = r.balanceBackward(ctx, k, v, tok)
	}
	bw, err := st.beginBackward(ctx, q, o, lse, do, tok)
	if err != nil {
		return nil, nil, nil, err
	}
	cur := newKV(k, v, tok)
	gradSpecs := []Spec{specOf(k), specOf(v)}
	var (
		inSum   func() ([]*tensors.Tensor, error) // from the previous rank: what the ranks before added to the held block
		pending []func() error                    // sends in flight
	)
	for s := range r.Mesh.SP {
		var nextKV func() ([]*tensors.Tensor, error)
		if s < r.Mesh.SP-1 {
			nextKV = r.exchange(ctx, msgBKV, s, cur.tensors(), kvSpecs(cur))
		}
		if err := st.visit(ctx, s, cur); err != nil {
			return nil, nil, nil, err
		}
		dkb, dvb, err := bw.Grad(cur.k, cur.v, cur.tok) // SumOnto's order, without a partial per query block
		if err != nil {
			return nil, nil, nil, err
		}
		var before []*tensors.Tensor
		if inSum != nil {
			msg, err := inSum()
			if err != nil {
				return nil, nil, nil, err
			}
			before = st.sumBefore(msg)
		}
		pending = append(pending, r.sendNext(ctx, msgDKV, s, st.carry(dkb, dvb, before)))
		inSum = r.recvPrev(ctx, msgDKV, s, st.sumSpecs(s, gradSpecs))
		if nextKV != nil {
			ts, err := nextKV()
			if err != nil {
				return nil, nil, nil, err
			}
			cur = kvFrom(ts)
		}
	}
	msg, err := inSum() // this rank's own block, with every rank's share
	if err != nil {
		return nil, nil, nil, err
	}
	home := st.homeSum(msg)
	for _, sent := range pending {
		if err := sent(); err != nil {
			return nil, nil, nil, err
		}
	}
	dq, err = st.finishBackward(ctx, bw.DQ)
	return dq, home[0], home[1], err
}

// plainRing is the ring alone: every rank computes all its own queries, and a
// block's sum travels as one message, this rank's share added onto the sum of
// the ranks before.
type plainRing struct{ attn *model.BlockAttention }

func (p plainRing) begin(_ context.Context, q *tensors.Tensor, tok model.Tokens) (*model.AttnForward, error) {
	return p.attn.Begin(q, tok)
}

func (p plainRing) beginBackward(_ context.Context, q, o, lse, do *tensors.Tensor, tok model.Tokens) (*model.AttnBackward, error) {
	return p.attn.BeginBackward(q, tok, o, lse, do)
}

func (plainRing) visit(context.Context, int, kvMsg) error { return nil }

func (plainRing) finish(_ context.Context, o, lse *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor, error) {
	return o, lse, nil
}

func (plainRing) sumBefore(msg []*tensors.Tensor) []*tensors.Tensor { return msg }
func (plainRing) homeSum(msg []*tensors.Tensor) []*tensors.Tensor   { return msg }
func (plainRing) sumSpecs(_ int, grad []Spec) []Spec                { return grad }

func (plainRing) carry(dk, dv *tensors.Tensor, before []*tensors.Tensor) []*tensors.Tensor {
	if before != nil {
		host.AddInto(dk, before[0])
		host.AddInto(dv, before[1])
	}
	return []*tensors.Tensor{dk, dv}
}

func (plainRing) finishBackward(_ context.Context, dq *tensors.Tensor) (*tensors.Tensor, error) {
	return dq, nil
}
