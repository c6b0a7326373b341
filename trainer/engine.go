package trainer

import (
	"context"
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
)

// Engine runs the forward and backward of one worker's shard, layer by layer, the
// way DESIGN.md draws the step: only each layer's input is stored; in backward the
// layer's inside (PreAttn, attention, PostAttn) is recomputed from it.
//
// With KeepAttention (recompute: except_attention) the forward also saves each
// layer's attention output and lse, and backward recomputes only the projections
// and the MLP: at long lengths attention is most of the work, so this trades one
// more [L, D] tensor per layer for about a quarter of the step.
type Engine struct {
	Pieces        *model.Pieces
	Attn          Attention
	Params        *model.Params
	Store         ActivationStore
	KeepAttention bool
	// LoRA, when the model has adapters, computes through merged weights and
	// pulls gradients back to what trains (Params.Trainable) only.
	LoRA *model.LoRAPieces
	// SeqLen is the whole sequence's length (data.seq_len), the same on every
	// worker: dynamic rope_scaling reads it.
	SeqLen int
	// LossChunk > 0 computes the head's loss and its gradient LossChunk
	// tokens at a time (memory.loss_chunk): [LossChunk, vocab] logits, never
	// [tokens, vocab]. 0: all at once.
	LossChunk int
	// Device, when set, keeps the step's tensors where the backend computes (a
	// GPU): the embedding is looked up and gradients are summed by compiled
	// graphs, never by the host helpers, which would copy every tensor to the
	// host and back. Nil on the CPU backend, whose device memory is the host's.
	Device *optim.Kernels

	actPeak int64 // most bytes stored at once since ActivationPeak last reset it
}

// Attention is the attention schedule the engine hands each layer's q, k, v to:
// blockwise on this worker alone (*model.BlockAttention), or across the workers
// of a ring (parallel.RingAttention, parallel.Ulysses). The model never asks
// whether it is distributed.
type Attention interface {
	// Forward: q [Lw, H, Dh], k, v [Lw, KH, Dh] of this worker's tokens ->
	// o [Lw, H*Dh] and lse [Lw, KH, G].
	Forward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens) (o, lse *tensors.Tensor, err error)
	// Backward: upstream do [Lw, H*Dh] -> dq, dk, dv for this worker's tokens.
	Backward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error)
}

// Grads are gradient accumulators, one per parameter, by name.
type Grads map[string]*tensors.Tensor

// NewGrads makes zero accumulators shaped like the parameters that train.
func NewGrads(p *model.Params) Grads {
	g := Grads{}
	for _, name := range p.Trainable() {
		t := p.Get(name)
		g[name] = host.NewZeros(t.DType(), t.Shape().Dimensions...)
	}
	return g
}

// Zero resets every accumulator in place (reusing the memory: fresh pages are slow here).
func (g Grads) Zero() {
	for _, t := range g {
		host.Fill(t, 0)
	}
}

// Reset empties every accumulator without touching its memory: the first
// gradient added becomes it (Engine.Device's way of zeroing: no fill on the host).
func (g Grads) Reset() {
	for name := range g {
		g[name] = nil
	}
}

// add sums t into the accumulator of name: on the host, in place; on a device
// by a compiled add (which donates the accumulator and returns the sum).
func (e *Engine) add(g Grads, name string, t *tensors.Tensor) error {
	switch {
	case e.Device == nil:
		host.AddInto(g[name], t)
	case g[name] == nil:
		g[name] = t
	default:
		sum, err := e.Device.Accumulate(g[name], t)
		if err != nil {
			return fmt.Errorf("gradient of %s: %w", name, err)
		}
		g[name] = sum
	}
	return nil
}

func (e *Engine) addAll(g Grads, ts map[string]*tensors.Tensor) error {
	for name, t := range ts {
		if err := e.add(g, name, t); err != nil {
			return err
		}
	}
	return nil
}

// sum returns a + b, reusing a's memory.
func (e *Engine) sum(a, b *tensors.Tensor) (*tensors.Tensor, error) {
	if e.Device == nil {
		host.AddInto(a, b)
		return a, nil
	}
	return e.Device.Accumulate(a, b)
}

// embed looks the tokens up in the embedding table.
func (e *Engine) embed(bt batchTensors, tokens []int32) (*tensors.Tensor, error) {
	table, dt := e.Params.Get(embedName), e.Params.DType
	if e.Device == nil {
		return host.GatherRowsAs(table, tokens, dt), nil // a frozen table kept in half precision: the rows widened
	}
	h, err := e.Pieces.EmbedOnDevice(table, bt.tokens)
	if err != nil || h.DType() == dt {
		return h, err
	}
	return e.LoRA.AsDType(h, dt)
}

// batchTensors are a micro-batch's per-token inputs as tensors.
type batchTensors struct {
	tokens   *tensors.Tensor // [L] int32
	tok      model.Tokens
	cos, sin *tensors.Tensor
	targets  *tensors.Tensor
	weight   *tensors.Tensor
}

func (e *Engine) prepare(b data.Batch) (batchTensors, error) {
	n := len(b.Tokens)
	if n == 0 || len(b.Targets) != n || len(b.Pos) != n || len(b.Doc) != n || len(b.Weight) != n {
		return batchTensors{}, fmt.Errorf("trainer: malformed batch: %d tokens, %d targets, %d positions, %d doc ids, %d weights",
			n, len(b.Targets), len(b.Pos), len(b.Doc), len(b.Weight))
	}
	c, dt := e.Params.Config, e.Params.DType
	for i, t := range b.Tokens {
		if t < 0 || int(t) >= c.Vocab || b.Targets[i] < 0 || int(b.Targets[i]) >= c.Vocab {
			return batchTensors{}, fmt.Errorf("trainer: token %d at %d outside the vocabulary [0, %d)", max(t, b.Targets[i]), i, c.Vocab)
		}
	}
	cos, sin := model.RopeTablesFor(c, dt, b.Pos, e.SeqLen)
	w := make([]float64, n)
	for i, x := range b.Weight {
		w[i] = float64(x)
	}
	return batchTensors{
		tokens:  host.Int32s(b.Tokens),
		tok:     model.Tokens{Pos: b.Pos, Doc: b.Doc},
		cos:     cos,
		sin:     sin,
		targets: host.Int32s(b.Targets),
		weight:  host.FromFloat64(dt, w, n),
	}, nil
}

// layer is layer l's weights as the forward uses them: with the adapters merged in.
func (e *Engine) layer(l int) (model.LayerWeights, error) {
	if e.LoRA == nil {
		return e.Params.Layer(l), nil
	}
	return e.LoRA.Layer(e.Params, l)
}

// layerForward: h_l -> h_{l+1}, and the attention's output and lse.
func (e *Engine) layerForward(ctx context.Context, l int, h *tensors.Tensor, bt batchTensors) (next, o, lse *tensors.Tensor, err error) {
	w, err := e.layer(l)
	if err != nil {
		return nil, nil, nil, err
	}
	return e.Pieces.LayerForward(ctx, w, h, bt.cos, bt.sin, func(ctx context.Context, q, k, v *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor, error) {
		return e.Attn.Forward(ctx, q, k, v, bt.tok)
	})
}

// ActivationPeak is the most bytes the store held at once (with the layer being
// worked on) since the last call, which resets it.
func (e *Engine) ActivationPeak() int64 {
	p := e.actPeak
	e.actPeak = 0
	return p
}

func tensorBytes(ts []*tensors.Tensor) int64 {
	var n int64
	for _, t := range ts {
		n += t.ByteSize()
	}
	return n
}

// Loss is the forward alone: sum(weight*CE)*scale.
func (e *Engine) Loss(ctx context.Context, b data.Batch, scale float64) (float64, error) {
	p := e.Params
	bt, err := e.prepare(b)
	if err != nil {
		return 0, err
	}
	h, err := e.embed(bt, b.Tokens)
	if err != nil {
		return 0, fmt.Errorf("trainer: embed: %w", err)
	}
	for l := range p.Config.Layers {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if h, _, _, err = e.layerForward(ctx, l, h, bt); err != nil {
			return 0, fmt.Errorf("trainer: layer %d forward: %w", l, err)
		}
	}
	n, chunk := h.Shape().Dimensions[0], e.LossChunk
	if chunk <= 0 {
		chunk = n
	}
	sum := 0.0
	for lo := 0; lo < n; lo += chunk { // as headBackward: [chunk, vocab] logits at a time
		hi := min(lo+chunk, n)
		hc, tc, wc := h, bt.targets, bt.weight
		if hi-lo < n {
			hc, tc, wc = host.SliceRows(h, lo, hi), host.SliceRows(bt.targets, lo, hi), host.SliceRows(bt.weight, lo, hi)
		}
		loss, err := e.Pieces.HeadLoss(p.Get(finalNormName), p.OutputWeight(), hc, tc, wc, host.NewScalar(p.DType, scale))
		if err != nil {
			return 0, fmt.Errorf("trainer: head: %w", err)
		}
		sum += host.ScalarValue(loss)
	}
	return sum, nil
}

const (
	embedName     = "model.embed_tokens.weight"
	finalNormName = "model.norm.weight"
)

func outputName(c model.Config) string {
	if c.TieEmbeddings {
		return embedName
	}
	return "lm_head.weight"
}
