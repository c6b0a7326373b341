package model

import (
	"context"
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// FusedAttention is attention as one fused kernel per layer (cuDNN's flash
// attention, through XLA on a CUDA backend) wherever its mask is the plain
// causal one: a single document whose positions run 0, 1, 2, ... (or any run
// of consecutive positions) over the whole shard. Everything else (packed
// documents, another worker's keys) goes to Fallback, the blockwise schedule.
// The decision depends on the tokens alone, so a forward and its backward
// always take the same path.
//
// cuDNN's kernel takes bf16 or f16 operands (mixed precision) and returns the
// softmax statistics (log-sum-exp) beside the output; its backward recomputes
// the forward inside the same graph (GoMLX exposes the fused backward only as
// the gradient of the fused forward), which costs one more attention forward
// per layer than a kernel that reads the saved statistics.
type FusedAttention struct {
	P        *Pieces
	Fallback *BlockAttention
}

// Plain reports whether the tokens' mask is the plain causal one: one document,
// consecutive positions.
func Plain(t Tokens) bool {
	for i := range t.Pos {
		if t.Doc[i] != t.Doc[0] || t.Pos[i] != t.Pos[0]+int32(i) {
			return false
		}
	}
	return t.Len() > 0
}

// Forward: q [L, H, Dh], k, v [L, KH, Dh] -> o [L, H*Dh], lse [L, KH, G].
func (f *FusedAttention) Forward(ctx context.Context, q, k, v *tensors.Tensor, t Tokens) (o, lse *tensors.Tensor, err error) {
	if !Plain(t) {
		return f.Fallback.Forward(ctx, q, k, v, t)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	e, err := f.P.fusedPieces()
	if err != nil {
		return nil, nil, err
	}
	out, err := run(e.fwd, 2, q, k, v)
	if err != nil {
		return nil, nil, err
	}
	return out[0], out[1], nil
}

// Backward: upstream do [L, H*Dh] -> dq [L, H, Dh], dk, dv [L, KH, Dh] (float32).
func (f *FusedAttention) Backward(ctx context.Context, q, k, v *tensors.Tensor, t Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error) {
	if !Plain(t) {
		return f.Fallback.Backward(ctx, q, k, v, t, o, lse, do)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	e, err := f.P.fusedPieces()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := run(e.bwd, 3, q, k, v, do)
	if err != nil {
		return nil, nil, nil, err
	}
	return out[0], out[1], out[2], nil
}

type fusedExecs struct{ fwd, bwd *Exec }

// fusedAttn: q [L, H, Dh], k, v [L, KH, Dh] (bf16) -> o [L, H*Dh] and lse [L, KH, G]
// (float32; zeros if the backend returns no statistics).
func fusedAttn(c Config, q, k, v *Node) (o, lse *Node) {
	L, h, hd := q.Shape().Dimensions[0], c.Heads, c.HeadDimension()
	out, states := BackendFusedScaledDotProductAttention(ExpandAxes(q, 0), ExpandAxes(k, 0), ExpandAxes(v, 0),
		compute.AttentionAxesLayoutBSHD, &compute.ScaledDotProductAttentionConfig{Causal: true, Scale: scale(c)})
	o = Reshape(out, L, h*hd)
	if len(states) > 0 && states[0].Rank() == 3 { // [1, H, L]: query head kh*G + g, as repeat_kv
		lse = Reshape(TransposeAllAxes(Reshape(as(states[0], dtypes.Float32), h, L), 1, 0), L, c.KVHeads, h/c.KVHeads)
	} else {
		lse = Zeros(q.Graph(), shapes.Make(dtypes.Float32, L, c.KVHeads, h/c.KVHeads))
	}
	return o, lse
}

func (p *Pieces) fusedPieces() (fusedExecs, error) {
	p.fusedOnce.Do(func() {
		c := p.cfg
		mk := func(name string, fn func([]*Node) []*Node) *Exec {
			if p.fusedErr != nil {
				return nil
			}
			e, err := NewExec(p.backend, fn)
			if err != nil {
				p.fusedErr = fmt.Errorf("model: piece %s: %w", name, err)
				return nil
			}
			return e.WithName(name).SetMaxCache(8)
		}
		// in: q, k, v -> o, lse
		p.fused.fwd = mk("AttnFused", func(in []*Node) []*Node {
			o, lse := fusedAttn(c, toCompute(c, in[0]), toCompute(c, in[1]), toCompute(c, in[2]))
			return []*Node{o, lse}
		})
		// in: q, k, v, do -> dq, dk, dv: the fused backward, as the gradient of sum(o * do)
		p.fused.bwd = mk("AttnFusedGrad", func(in []*Node) []*Node {
			q, k, v := toCompute(c, in[0]), toCompute(c, in[1]), toCompute(c, in[2])
			o, _ := fusedAttn(c, q, k, v)
			dt := StateDType(q.DType())
			g := Gradient(ReduceAllSum(Mul(as(o, dt), StopGradient(as(in[3], dt)))), q, k, v)
			return []*Node{as(g[0], dt), as(g[1], dt), as(g[2], dt)}
		})
	})
	return p.fused, p.fusedErr
}
