package parallel

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/model"
)

// RingAttention is attention over a sequence sharded across the SP ranks of a
// ring. Each rank holds the queries, keys and values of its own tokens; the key
// and value blocks travel around the ring, and each rank folds every visiting
// block into its queries' online softmax (model.AttnForward) while the next one
// is already in flight. In backward the blocks travel again, each carrying the
// dK and dV accumulated for it so far, and after SP steps they are back home.
//
// Every rank must call Forward and Backward in the same order: the call counter
// is part of the message tags.
type RingAttention struct {
	Attn *model.BlockAttention
	T    Transport
	Mesh Mesh
	Wait *WaitClock // time blocked on a block not here yet (may be nil)
	n    int        // calls so far, for tags
}

// block is a key/value block on its way around the ring.
type kvMsg struct {
	k, v     *tensors.Tensor
	tok      model.Tokens
	pos, doc *tensors.Tensor
}

func newKV(k, v *tensors.Tensor, tok model.Tokens) kvMsg {
	return kvMsg{k: k, v: v, tok: tok, pos: model.Int32s(tok.Pos), doc: model.Int32s(tok.Doc)}
}

func (r *RingAttention) tag(kind string, step int) string {
	return fmt.Sprintf("ring/%d/%s/%d", r.n, kind, step)
}

// exchange sends ts to the next rank and receives the same kind from the previous
// one, concurrently; call wait() for the received tensors.
func (r *RingAttention) exchange(ctx context.Context, tag string, ts []*tensors.Tensor, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	sent := r.sendNext(ctx, tag, ts)
	got := r.recvPrev(ctx, tag, want)
	return func() ([]*tensors.Tensor, error) {
		res, err := got()
		if serr := sent(); serr != nil {
			return nil, serr
		}
		return res, err
	}
}

// sendNext sends ts to the next rank in the background; call the result to wait.
func (r *RingAttention) sendNext(ctx context.Context, tag string, ts []*tensors.Tensor) (wait func() error) {
	errc := make(chan error, 1)
	go func() { errc <- r.T.Send(ctx, r.Mesh.RingNext(r.T.Rank()), tag, ts...) }()
	return func() error {
		defer r.Wait.Since("ring send", time.Now())
		if err := <-errc; err != nil {
			return fmt.Errorf("ring attention: send %s: %w", tag, err)
		}
		return nil
	}
}

// recvPrev receives from the previous rank in the background; call the result to
// wait for the tensors. Time spent waiting there is time the step is blocked.
func (r *RingAttention) recvPrev(ctx context.Context, tag string, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	kind := strings.Split(tag, "/")[2] // ring/N/kind/step: kv, bkv or dkv
	type result struct {
		ts  []*tensors.Tensor
		err error
	}
	got := make(chan result, 1)
	go func() {
		ts, err := r.T.Recv(ctx, r.Mesh.RingPrev(r.T.Rank()), tag, want...)
		got <- result{ts, err}
	}()
	return func() ([]*tensors.Tensor, error) {
		defer r.Wait.Since("ring "+kind, time.Now())
		res := <-got
		if res.err != nil {
			return nil, fmt.Errorf("ring attention: receive %s: %w", tag, res.err)
		}
		return res.ts, nil
	}
}

func specOf(t *tensors.Tensor) Spec {
	return Spec{DType: strings.ToLower(t.DType().String()), Shape: t.Shape().Dimensions}
}

func kvSpecs(m kvMsg) []Spec { return []Spec{specOf(m.k), specOf(m.v), specOf(m.pos), specOf(m.doc)} }

func kvFrom(ts []*tensors.Tensor) kvMsg {
	pos := tensors.MustCopyFlatData[int32](ts[2])
	doc := tensors.MustCopyFlatData[int32](ts[3])
	return kvMsg{k: ts[0], v: ts[1], pos: ts[2], doc: ts[3], tok: model.Tokens{Pos: pos, Doc: doc}}
}

// Forward: this rank's queries q [Lw, H, Dh] against every rank's keys and
// values (k, v [Lw, KH, Dh] here) -> o [Lw, H*Dh], lse [Lw, KH, G].
// Shards must have equal lengths (zigzag guarantees it).
func (r *RingAttention) Forward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens) (o, lse *tensors.Tensor, err error) {
	r.n++
	f, err := r.Attn.Begin(q, tok)
	if err != nil {
		return nil, nil, err
	}
	cur := newKV(k, v, tok)
	for s := range r.Mesh.SP {
		var wait func() ([]*tensors.Tensor, error)
		if s < r.Mesh.SP-1 { // the next block is in flight while this one is computed
			wait = r.exchange(ctx, r.tag("kv", s), []*tensors.Tensor{cur.k, cur.v, cur.pos, cur.doc}, kvSpecs(cur))
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
	return f.Finish()
}

// Backward: given o, lse and do [Lw, H*Dh] of this rank's queries, returns dq for
// them and dk, dv for this rank's own keys and values, summed over every rank's
// queries.
//
// At step s this rank holds the block that started s ranks back. While it
// computes that block's share of dK, dV, the next block is on its way, and so is
// the sum of what the ranks before added to this block; the new sum then goes on
// to the next rank in the background. After SP steps each block's sum is home.
func (r *RingAttention) Backward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error) {
	r.n++
	bw, err := r.Attn.BeginBackward(q, tok, o, lse, do)
	if err != nil {
		return nil, nil, nil, err
	}
	cur := newKV(k, v, tok)
	gradSpecs := []Spec{specOf(k), specOf(v)}
	var (
		inSum   func() ([]*tensors.Tensor, error) // the held block's dK, dV summed by the ranks before
		pending []func() error                    // sends in flight
	)
	for s := range r.Mesh.SP {
		var nextKV func() ([]*tensors.Tensor, error)
		if s < r.Mesh.SP-1 {
			nextKV = r.exchange(ctx, r.tag("bkv", s), []*tensors.Tensor{cur.k, cur.v, cur.pos, cur.doc}, kvSpecs(cur))
		}
		dkb, dvb, err := bw.Grad(cur.k, cur.v, cur.tok)
		if err != nil {
			return nil, nil, nil, err
		}
		if inSum != nil {
			sum, err := inSum()
			if err != nil {
				return nil, nil, nil, err
			}
			model.AddInto(dkb, sum[0])
			model.AddInto(dvb, sum[1])
		}
		tag := r.tag("dkv", s)
		pending = append(pending, r.sendNext(ctx, tag, []*tensors.Tensor{dkb, dvb}))
		inSum = r.recvPrev(ctx, tag, gradSpecs)
		if nextKV != nil {
			ts, err := nextKV()
			if err != nil {
				return nil, nil, nil, err
			}
			cur = kvFrom(ts)
		}
	}
	home, err := inSum() // this rank's own block, with every rank's share
	if err != nil {
		return nil, nil, nil, err
	}
	for _, sent := range pending {
		if err := sent(); err != nil {
			return nil, nil, nil, err
		}
	}
	return bw.DQ, home[0], home[1], nil
}
