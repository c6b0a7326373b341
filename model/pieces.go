package model

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// Pieces are the compiled graph pieces of the decoder: the per-layer forward pieces,
// their vector-Jacobian products, the attention block kernels and the loss head. Each
// is compiled once per input shape (and dtype) and cached; every layer shares them.
// The Go code that calls them in order (the trainer) is the schedule.
//
// Pieces is safe for concurrent use: graph.Exec compiles and runs concurrently.
type Pieces struct {
	cfg     Config
	backend compute.Backend

	preAttn, preAttnVJP   *Exec
	postAttn, postAttnVJP *Exec
	headLoss, headVJP     *Exec
	headLogits            *Exec
	attnFwd, attnFwdFull  *Exec
	attnBwd, attnBwdFull  *Exec
	attnFinish, attnDelta *Exec

	s2mu    sync.Mutex
	s2execs map[int]s2Kernels // shifted sparse attention kernels, by unshifted head count (s2attn.go)

	fusedOnce sync.Once // the fused attention kernels (fused.go)
	fused     fusedExecs
	fusedErr  error

	embedOnce sync.Once // the embedding on a device (embed.go)
	embed     embedPieces
	embedErr  error
}

// LayerWeights are one layer's parameters, in the order the pieces take them.
// The biases are nil in a model without them (Config.QKVBias, Config.OBias).
type LayerWeights struct {
	InputNorm, Q, K, V, O, PostNorm, Gate, Up, Down *tensors.Tensor
	QBias, KBias, VBias, OBias                      *tensors.Tensor
}

// Layer returns layer i's weights.
func (p *Params) Layer(i int) LayerWeights {
	g := func(s string) *tensors.Tensor { return p.Get(LayerParam(i, s)) }
	w := LayerWeights{
		InputNorm: g(InputNorm), Q: g(QProj), K: g(KProj), V: g(VProj), O: g(OProj),
		PostNorm: g(PostNorm), Gate: g(GateProj), Up: g(UpProj), Down: g(DownProj),
	}
	if p.Config.QKVBias {
		w.QBias, w.KBias, w.VBias = g(QProjBias), g(KProjBias), g(VProjBias)
	}
	if p.Config.OBias {
		w.OBias = g(OProjBias)
	}
	return w
}

// OutputWeight is the head's projection: lm_head, or the embedding when tied.
func (p *Params) OutputWeight() *tensors.Tensor {
	if p.Config.TieEmbeddings {
		return p.Get("model.embed_tokens.weight")
	}
	return p.Get("lm_head.weight")
}

// NewPieces builds (lazily compiles) the pieces for a model configuration.
func NewPieces(backend compute.Backend, cfg Config) (*Pieces, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg
	p := &Pieces{cfg: cfg, backend: backend}
	var err error
	mk := func(name string, fn func([]*Node) []*Node) *Exec {
		if err != nil {
			return nil
		}
		var e *Exec
		e, err = NewExec(backend, fn)
		if err != nil {
			err = fmt.Errorf("model: piece %s: %w", name, err)
			return nil
		}
		return e.WithName(name).SetMaxCache(64)
	}
	// in: h, normW, wq, wk, wv, cos, sin, [bq, bk, bv]
	p.preAttn = mk("PreAttn", func(in []*Node) []*Node {
		var b qkvBias
		if c.QKVBias {
			b = qkvBias{in[7], in[8], in[9]}
		}
		q, k, v := preAttn(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6], b)
		return []*Node{q, k, v}
	})
	// in: h, normW, wq, wk, wv, cos, sin, dq, dk, dv -> dh, dnormW, dwq, dwk, dwv, [dbq, dbk, dbv]
	p.preAttnVJP = mk("PreAttnVJP", func(in []*Node) []*Node {
		return preAttnBwd(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9])
	})
	// in: h, o, wo, normW, wg, wu, wd, [bo]
	p.postAttn = mk("PostAttn", func(in []*Node) []*Node {
		return []*Node{postAttn(c, in[0], in[1], in[2], optional(c.OBias, in, 7), in[3], in[4], in[5], in[6])}
	})
	// in: h, o, wo, normW, wg, wu, wd, dhNext, [bo] -> dh, do, dwo, dnormW, dwg, dwu, dwd, [dbo]
	p.postAttnVJP = mk("PostAttnVJP", func(in []*Node) []*Node {
		return postAttnBwd(c, in[0], in[1], in[2], optional(c.OBias, in, 8), in[3], in[4], in[5], in[6], in[7])
	})
	// in: h, normW, wout, targets, weight, scale -> loss
	p.headLoss = mk("Head", func(in []*Node) []*Node {
		return []*Node{headLoss(c, in[0], in[1], in[2], in[3], in[4], in[5])}
	})
	// in: h, normW, wout -> logits
	p.headLogits = mk("Logits", func(in []*Node) []*Node {
		return []*Node{headLogits(c, in[0], in[1], in[2])}
	})
	// in: h, normW, wout, targets, weight, scale -> loss, dh, dnormW, dwout
	p.headVJP = mk("HeadVJP", func(in []*Node) []*Node {
		loss := headLoss(c, in[0], in[1], in[2], in[3], in[4], in[5])
		return append([]*Node{loss}, Gradient(loss, in[0:3]...)...)
	})
	// in: q, k, v, qpos, kpos, qdoc, kdoc, m, l, acc -> m, l, acc
	p.attnFwd = mk("AttnBlock", func(in []*Node) []*Node {
		bias := maskBias(in[7].DType(), in[3], in[4], in[5], in[6]) // in the statistics' dtype
		m, l, acc := attnFwdBlock(c, in[0], in[1], in[2], bias, in[7], in[8], in[9])
		return []*Node{m, l, acc}
	})
	// in: q, k, v, m, l, acc -> m, l, acc (every key visible to every query)
	p.attnFwdFull = mk("AttnBlockFull", func(in []*Node) []*Node {
		m, l, acc := attnFwdBlock(c, in[0], in[1], in[2], nil, in[3], in[4], in[5])
		return []*Node{m, l, acc}
	})
	// in: m, l, acc -> o, lse
	p.attnFinish = mk("AttnFinish", func(in []*Node) []*Node {
		o, lse := attnFinish(c, in[0], in[1], in[2])
		return []*Node{o, lse}
	})
	// in: q, k, v, qpos, kpos, qdoc, kdoc, do, lse, delta -> dq, dk, dv
	p.attnBwd = mk("AttnBlockGrad", func(in []*Node) []*Node {
		bias := maskBias(in[8].DType(), in[3], in[4], in[5], in[6]) // in lse's dtype
		dq, dk, dv := attnBwdBlock(c, in[0], in[1], in[2], bias, in[7], in[8], in[9])
		return []*Node{dq, dk, dv}
	})
	// in: q, k, v, do, lse, delta -> dq, dk, dv (every key visible to every query)
	p.attnBwdFull = mk("AttnBlockGradFull", func(in []*Node) []*Node {
		dq, dk, dv := attnBwdBlock(c, in[0], in[1], in[2], nil, in[3], in[4], in[5])
		return []*Node{dq, dk, dv}
	})
	// in: do, o -> delta
	p.attnDelta = mk("AttnDelta", func(in []*Node) []*Node {
		return []*Node{attnDelta(c, in[0], in[1])}
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Share readies tensors that several executions will read at once: GoMLX moves
// a host tensor to the device lazily, on its first use, and two executions doing
// that together race. After Share the tensors are only read.
func (p *Pieces) Share(ts ...*tensors.Tensor) error {
	for _, t := range ts {
		if err := t.MaterializeOnDevice(p.backend, true, 0); err != nil {
			return fmt.Errorf("model: share %s: %w", t.Shape(), err)
		}
	}
	return nil
}

// ForHeads builds pieces on the same backend for a model whose attention has
// `heads` query and `kvHeads` key/value heads of the same width (what one rank
// of Ulysses attention computes: a group of the heads over the whole sequence).
func (p *Pieces) ForHeads(heads, kvHeads int) (*Pieces, error) {
	c := p.cfg
	c.HeadDim = c.HeadDimension()
	c.Heads, c.KVHeads = heads, kvHeads
	return NewPieces(p.backend, c)
}

// Config is the model configuration the pieces were built for.
func (p *Pieces) Config() Config { return p.cfg }

func run(e *Exec, want int, args ...any) ([]*tensors.Tensor, error) {
	start := time.Now()
	out, err := e.Exec(args...)
	timings.add(e.Name(), time.Since(start))
	if err == nil {
		var n int64
		for _, t := range out {
			n += t.ByteSize()
		}
		largest.note(e.Name(), n)
	}
	if err != nil {
		return nil, fmt.Errorf("model: %s: %w", e.Name(), err)
	}
	if len(out) != want {
		return nil, fmt.Errorf("model: %s: %d outputs, want %d", e.Name(), len(out), want)
	}
	return out, nil
}

// PreAttn: h [L, D], cos, sin [L, Dh] -> q [L, H, Dh], k, v [L, KH, Dh].
func (p *Pieces) PreAttn(w LayerWeights, h, cos, sin *tensors.Tensor) (q, k, v *tensors.Tensor, err error) {
	args, err := p.preAttnArgs(w, h, cos, sin)
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := run(p.preAttn, 3, args...)
	if err != nil {
		return nil, nil, nil, err
	}
	return out[0], out[1], out[2], nil
}

// PreAttnGrads are the gradients PreAttnVJP returns; the biases' are nil
// without Config.QKVBias.
type PreAttnGrads struct {
	H, InputNorm, Q, K, V *tensors.Tensor
	QBias, KBias, VBias   *tensors.Tensor
}

// PreAttnVJP recomputes PreAttn and pulls (dq, dk, dv) back to h and the
// weights. The biases' gradients do not depend on the biases: w needs none.
func (p *Pieces) PreAttnVJP(w LayerWeights, h, cos, sin, dq, dk, dv *tensors.Tensor) (PreAttnGrads, error) {
	want := 5
	if p.cfg.QKVBias {
		want = 8
	}
	out, err := run(p.preAttnVJP, want, h, w.InputNorm, w.Q, w.K, w.V, cos, sin, dq, dk, dv)
	if err != nil {
		return PreAttnGrads{}, err
	}
	g := PreAttnGrads{H: out[0], InputNorm: out[1], Q: out[2], K: out[3], V: out[4]}
	if p.cfg.QKVBias {
		g.QBias, g.KBias, g.VBias = out[5], out[6], out[7]
	}
	return g, nil
}

// PostAttn: h [L, D], o [L, H*Dh] -> next layer input [L, D].
func (p *Pieces) PostAttn(w LayerWeights, h, o *tensors.Tensor) (*tensors.Tensor, error) {
	args, err := p.withOBias(w, []any{h, o, w.O, w.PostNorm, w.Gate, w.Up, w.Down})
	if err != nil {
		return nil, err
	}
	out, err := run(p.postAttn, 1, args...)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// PostAttnGrads are the gradients PostAttnVJP returns; OBias is nil without
// Config.OBias.
type PostAttnGrads struct{ H, O, OProj, PostNorm, Gate, Up, Down, OBias *tensors.Tensor }

// PostAttnVJP recomputes PostAttn and pulls dhNext back to h, o and the weights.
func (p *Pieces) PostAttnVJP(w LayerWeights, h, o, dhNext *tensors.Tensor) (PostAttnGrads, error) {
	args, err := p.withOBias(w, []any{h, o, w.O, w.PostNorm, w.Gate, w.Up, w.Down, dhNext})
	if err != nil {
		return PostAttnGrads{}, err
	}
	want := 7
	if p.cfg.OBias {
		want = 8
	}
	out, err := run(p.postAttnVJP, want, args...)
	if err != nil {
		return PostAttnGrads{}, err
	}
	g := PostAttnGrads{out[0], out[1], out[2], out[3], out[4], out[5], out[6], nil}
	if p.cfg.OBias {
		g.OBias = out[7]
	}
	return g, nil
}

// Attend is the attention a layer hands its q [L, H, Dh], k, v [L, KH, Dh] to,
// returning o [L, H*Dh] and lse [L, KH, G]. The caller chooses it: the trainer's
// schedule (blockwise, ring, Ulysses), or eval's local or KV-cache attention.
type Attend func(ctx context.Context, q, k, v *tensors.Tensor) (o, lse *tensors.Tensor, err error)

// LayerForward runs one decoder layer, h [L, D] -> next [L, D]: PreAttn, attend,
// PostAttn. w are the weights as the caller computes with them (LoRA merged in or
// not); o and lse are the attention's, for a backward that keeps them.
func (p *Pieces) LayerForward(ctx context.Context, w LayerWeights, h, cos, sin *tensors.Tensor, attend Attend) (next, o, lse *tensors.Tensor, err error) {
	q, k, v, err := p.PreAttn(w, h, cos, sin)
	if err != nil {
		return nil, nil, nil, err
	}
	if o, lse, err = attend(ctx, q, k, v); err != nil {
		return nil, nil, nil, err
	}
	if next, err = p.PostAttn(w, h, o); err != nil {
		return nil, nil, nil, err
	}
	return next, o, lse, nil
}

// HeadLoss: final norm, output projection and weighted cross-entropy, times scale.
// h [L, D], targets [L] int32, weight [L], scale [].
func (p *Pieces) HeadLoss(normW, wout, h, targets, weight, scale *tensors.Tensor) (*tensors.Tensor, error) {
	out, err := run(p.headLoss, 1, h, normW, wout, targets, weight, scale)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// Logits: final norm and output projection, h [L, D] -> logits [L, V].
func (p *Pieces) Logits(normW, wout, h *tensors.Tensor) (*tensors.Tensor, error) {
	out, err := run(p.headLogits, 1, h, normW, wout)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// HeadGrads are the loss and gradients HeadVJP returns.
type HeadGrads struct{ Loss, H, Norm, Out *tensors.Tensor }

// HeadVJP: the scaled loss and its gradients w.r.t. h, the final norm and the output weight.
func (p *Pieces) HeadVJP(normW, wout, h, targets, weight, scale *tensors.Tensor) (HeadGrads, error) {
	out, err := run(p.headVJP, 4, h, normW, wout, targets, weight, scale)
	if err != nil {
		return HeadGrads{}, err
	}
	return HeadGrads{out[0], out[1], out[2], out[3]}, nil
}

// AttnState is the running online-softmax state of one query block.
type AttnState struct{ M, L, Acc *tensors.Tensor }

// PairMask are a block pair's token positions and document ids (each [B] int32),
// from which the graph builds the mask; nil means every key is visible to every query.
//
// Under shifted sparse attention (s2attn.go) QGroup and KGroup, each token's
// unshifted and shifted group ([2, B] int32), restrict the mask further, per
// query head: the first Unshifted heads compare row 0, the others row 1. Nil
// groups mean the same mask for every head.
type PairMask struct {
	QPos, KPos, QDoc, KDoc *tensors.Tensor
	QGroup, KGroup         *tensors.Tensor
	Unshifted              int
}

// AttnBlock folds key block (k, v) into a query block's state.
func (p *Pieces) AttnBlock(q, k, v *tensors.Tensor, mask *PairMask, s AttnState) (AttnState, error) {
	var out []*tensors.Tensor
	var err error
	switch {
	case mask == nil:
		out, err = run(p.attnFwdFull, 3, q, k, v, s.M, s.L, s.Acc)
	case mask.QGroup != nil:
		var kern s2Kernels
		if kern, err = p.s2(mask.Unshifted); err == nil {
			out, err = run(kern.fwd, 3, q, k, v, mask.QPos, mask.KPos, mask.QDoc, mask.KDoc, mask.QGroup, mask.KGroup, s.M, s.L, s.Acc)
		}
	default:
		out, err = run(p.attnFwd, 3, q, k, v, mask.QPos, mask.KPos, mask.QDoc, mask.KDoc, s.M, s.L, s.Acc)
	}
	if err != nil {
		return AttnState{}, err
	}
	return AttnState{out[0], out[1], out[2]}, nil
}

// AttnFinish turns a query block's state into its output o [Bq, H*Dh] and lse [Bq, KH, G].
func (p *Pieces) AttnFinish(s AttnState) (o, lse *tensors.Tensor, err error) {
	out, err := run(p.attnFinish, 2, s.M, s.L, s.Acc)
	if err != nil {
		return nil, nil, err
	}
	return out[0], out[1], nil
}

// AttnDelta: rowsum(do * o) per head, for the backward of a query block.
func (p *Pieces) AttnDelta(do, o *tensors.Tensor) (*tensors.Tensor, error) {
	out, err := run(p.attnDelta, 1, do, o)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// AttnBlockGrad: one (query block, key block) pair's share of dq [Bq, H, Dh], dk, dv [Bk, KH, Dh].
// do is [Bq, H, Dh].
func (p *Pieces) AttnBlockGrad(q, k, v *tensors.Tensor, mask *PairMask, do, lse, delta *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error) {
	var out []*tensors.Tensor
	switch {
	case mask == nil:
		out, err = run(p.attnBwdFull, 3, q, k, v, do, lse, delta)
	case mask.QGroup != nil:
		var kern s2Kernels
		if kern, err = p.s2(mask.Unshifted); err == nil {
			out, err = run(kern.bwd, 3, q, k, v, mask.QPos, mask.KPos, mask.QDoc, mask.KDoc, mask.QGroup, mask.KGroup, do, lse, delta)
		}
	default:
		out, err = run(p.attnBwd, 3, q, k, v, mask.QPos, mask.KPos, mask.QDoc, mask.KDoc, do, lse, delta)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return out[0], out[1], out[2], nil
}
