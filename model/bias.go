package model

// Attention biases (Config.QKVBias, Config.OBias): Qwen2's q, k and v
// projections and Llama's attention_bias add a bias after the matrix product
// (before RoPE, for q and k). The pieces take them as extra inputs only when the config has
// them, so a model without biases compiles the very graphs it did before.

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// qkvBias are the q, k and v projections' biases, all nil without (Config.QKVBias).
type qkvBias struct{ q, k, v *Node }

// addBias: y [L, out] + b [out]; y itself when b is nil (no bias: the same graph).
func addBias(y, b *Node) *Node {
	if b == nil {
		return y
	}
	return Add(y, ExpandAxes(as(b, y.DType()), 0))
}

// optional is in[i] when the piece takes that input (has), else nil.
func optional(has bool, in []*Node, i int) *Node {
	if !has {
		return nil
	}
	return in[i]
}

// preAttnArgs are PreAttn's inputs: h, normW, wq, wk, wv, cos, sin, then
// bq, bk, bv with Config.QKVBias.
func (p *Pieces) preAttnArgs(w LayerWeights, h, cos, sin *tensors.Tensor) ([]any, error) {
	args := []any{h, w.InputNorm, w.Q, w.K, w.V, cos, sin}
	if !p.cfg.QKVBias {
		return args, nil
	}
	if w.QBias == nil || w.KBias == nil || w.VBias == nil {
		return nil, fmt.Errorf("model: PreAttn: the config has q, k, v biases and the layer's weights lack them")
	}
	return append(args, w.QBias, w.KBias, w.VBias), nil
}

// withOBias appends the output projection's bias to PostAttn's (or its VJP's)
// args when the config has one.
func (p *Pieces) withOBias(w LayerWeights, args []any) ([]any, error) {
	if !p.cfg.OBias {
		return args, nil
	}
	if w.OBias == nil {
		return nil, fmt.Errorf("model: PostAttn: the config has an o_proj bias and the layer's weights lack it")
	}
	return append(args, w.OBias), nil
}
