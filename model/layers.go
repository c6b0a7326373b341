package model

import (
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph-building code reads best unqualified, as GoMLX's own does
)

// The building blocks of the decoder, as GoMLX graph functions. They know nothing of
// workers or blocks: the pieces in pieces.go wire them into per-layer graphs.

// rmsNorm: x [L, D], w [D] -> x / sqrt(mean(x^2) + eps) * w.
func rmsNorm(x, w *Node, eps float64) *Node {
	ms := ReduceAndKeep(Square(x), ReduceMean, -1)
	// 1/Sqrt rather than Rsqrt: GoMLX has no gradient for Rsqrt (GOMLX-NOTES.md).
	return Mul(Div(x, Sqrt(AddScalar(ms, eps))), ExpandAxes(w, 0))
}

// linear: x [L, in], w [out, in] (Hugging Face layout) -> [L, out].
func linear(x, w *Node) *Node {
	return DotGeneral(x, []int{1}, nil, w, []int{1}, nil)
}

// rope applies rotary embedding in the Hugging Face rotate-half convention.
// x [L, H, Dh]; cos, sin [L, Dh] (the half-width frequencies repeated twice).
func rope(x, cos, sin *Node) *Node {
	half := x.Shape().Dimensions[2] / 2
	x1 := Slice(x, AxisRange(), AxisRange(), AxisRange(0, half))
	x2 := Slice(x, AxisRange(), AxisRange(), AxisRangeToEnd(half))
	rotated := Concatenate([]*Node{Neg(x2), x1}, -1)
	c := ExpandAxes(cos, 1) // [L, 1, Dh]
	s := ExpandAxes(sin, 1)
	return Add(Mul(x, c), Mul(rotated, s))
}

// silu(x) = x * sigmoid(x).
func silu(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// preAttn: h [L, D] -> q [L, H, Dh], k, v [L, KH, Dh] (RMSNorm, projections, RoPE on q and k).
func preAttn(c Config, h, normW, wq, wk, wv, cos, sin *Node) (q, k, v *Node) {
	L, hd := h.Shape().Dimensions[0], c.HeadDimension()
	x := rmsNorm(h, normW, c.NormEps)
	q = Reshape(linear(x, wq), L, c.Heads, hd)
	k = Reshape(linear(x, wk), L, c.KVHeads, hd)
	v = Reshape(linear(x, wv), L, c.KVHeads, hd)
	return rope(q, cos, sin), rope(k, cos, sin), v
}

// postAttn: h [L, D], o [L, H*Dh] -> the next layer's input [L, D]
// (output projection and residual, RMSNorm, SwiGLU MLP and residual).
func postAttn(c Config, h, o, wo, normW, wg, wu, wd *Node) *Node {
	h = Add(h, linear(o, wo))
	x := rmsNorm(h, normW, c.NormEps)
	return Add(h, linear(Mul(silu(linear(x, wg)), linear(x, wu)), wd))
}

// headLogits: h [L, D] -> logits [L, V] (final RMSNorm, output projection).
func headLogits(c Config, h, normW, wout *Node) *Node {
	return linear(rmsNorm(h, normW, c.NormEps), wout)
}

// headLoss: h [L, D], targets [L] int32, weight [L], scale [] -> sum(weight * crossentropy) * scale.
func headLoss(c Config, h, normW, wout, targets, weight, scale *Node) *Node {
	logp := LogSoftmax(headLogits(c, h, normW, wout), -1) // [L, V]
	onehot := OneHot(targets, c.Vocab, logp.DType())      // [L, V]
	nll := Neg(ReduceSum(Mul(logp, onehot), -1))          // [L]
	return Mul(ReduceAllSum(Mul(nll, weight)), scale)     // []
}
