package model

import (
	"github.com/gomlx/compute/dtypes"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph-building code reads best unqualified, as GoMLX's own does
)

// Mixed precision (Config.Compute = bfloat16): a matmul's operands are cast to
// the compute dtype and its result back to the weights' dtype, so everything
// between matmuls (norms, RoPE, SwiGLU, residuals, softmax statistics, the loss)
// runs in float32; what crosses pieces and workers for attention (q, k, v, o)
// is in the compute dtype.

// toCompute is x in the compute dtype (as it is when there is none).
func toCompute(c Config, x *Node) *Node {
	if c.Compute == dtypes.InvalidDType {
		return x
	}
	return as(x, c.Compute)
}

// mm is DotGeneral with its operands in the compute dtype and its result in
// out: under mixed precision the product accumulates in float32 and is not
// rounded to bf16 on the way out.
func mm(c Config, a *Node, aContract, aBatch []int, b *Node, bContract, bBatch []int, out dtypes.DType) *Node {
	if c.Compute == dtypes.InvalidDType {
		if a.DType() != b.DType() { // a frozen weight kept in half precision (LoRA.KeepsStored)
			a, b = as(a, out), as(b, out)
		}
		return as(DotGeneral(a, aContract, aBatch, b, bContract, bBatch), out)
	}
	return Dot(toCompute(c, a), toCompute(c, b)).WithAccumulatorDType(dtypes.Float32).WithOutputDType(out).
		General(aContract, aBatch, bContract, bBatch)
}

// as is x in dtype dt.
func as(x *Node, dt dtypes.DType) *Node {
	if x.DType() == dt {
		return x
	}
	return ConvertDType(x, dt)
}

// stateDType is the dtype of softmax statistics and gradients for operands of
// dtype dt: float32 under mixed precision.
func stateDType(c Config, dt dtypes.DType) dtypes.DType {
	if c.Compute != dtypes.InvalidDType {
		return StateDType(dt)
	}
	return dt
}

// StateDType is the dtype in which statistics and gradient sums of operands of
// dtype dt are kept: float32 for the half-precision types, dt otherwise.
func StateDType(dt dtypes.DType) dtypes.DType {
	if dt == dtypes.BFloat16 || dt == dtypes.Float16 {
		return dtypes.Float32
	}
	return dt
}

// The building blocks of the decoder, as GoMLX graph functions. They know nothing of
// workers or blocks: the pieces in pieces.go wire them into per-layer graphs.

// rmsNorm: x [L, D], w [D] -> x / sqrt(mean(x^2) + eps) * w.
func rmsNorm(x, w *Node, eps float64) *Node {
	ms := ReduceAndKeep(Square(x), ReduceMean, -1)
	// 1/Sqrt rather than Rsqrt: GoMLX has no gradient for Rsqrt (GOMLX-NOTES.md).
	return Mul(Div(x, Sqrt(AddScalar(ms, eps))), ExpandAxes(w, 0))
}

// linear: x [L, in], w [out, in] (Hugging Face layout) -> [L, out], in w's dtype.
func linear(c Config, x, w *Node) *Node {
	return mm(c, x, []int{1}, nil, w, []int{1}, nil, w.DType())
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

// preAttn: h [L, D] -> q [L, H, Dh], k, v [L, KH, Dh] (RMSNorm, projections,
// their biases when b holds them (bq [H*Dh], bk, bv [KH*Dh]; nil: none), RoPE on q and k).
func preAttn(c Config, h, normW, wq, wk, wv, cos, sin *Node, b qkvBias) (q, k, v *Node) {
	L, hd := h.Shape().Dimensions[0], c.HeadDimension()
	x := rmsNorm(h, normW, c.NormEps)
	q = Reshape(addBias(linear(c, x, wq), b.q), L, c.Heads, hd)
	k = Reshape(addBias(linear(c, x, wk), b.k), L, c.KVHeads, hd)
	v = Reshape(addBias(linear(c, x, wv), b.v), L, c.KVHeads, hd)
	return toCompute(c, rope(q, cos, sin)), toCompute(c, rope(k, cos, sin)), toCompute(c, v)
}

// postAttn: h [L, D], o [L, H*Dh] -> the next layer's input [L, D]
// (output projection, its bias bo [D] unless nil, and residual; RMSNorm, SwiGLU MLP and residual).
func postAttn(c Config, h, o, wo, bo, normW, wg, wu, wd *Node) *Node {
	h = Add(h, addBias(linear(c, o, wo), bo))
	x := rmsNorm(h, normW, c.NormEps)
	return Add(h, linear(c, Mul(silu(linear(c, x, wg)), linear(c, x, wu)), wd))
}

// headLogits: h [L, D] -> logits [L, V] (final RMSNorm, output projection), in
// h's dtype: a frozen wout kept in half precision (LoRA.KeepsStored) is widened
// inside the product, never as a [V, D] copy.
func headLogits(c Config, h, normW, wout *Node) *Node {
	x := rmsNorm(h, normW, c.NormEps)
	return mm(c, x, []int{1}, nil, wout, []int{1}, nil, x.DType())
}

// headLoss: h [L, D], targets [L] int32, weight [L], scale [] -> sum(weight * crossentropy) * scale.
func headLoss(c Config, h, normW, wout, targets, weight, scale *Node) *Node {
	logp := LogSoftmax(headLogits(c, h, normW, wout), -1) // [L, V]
	onehot := OneHot(targets, c.Vocab, logp.DType())      // [L, V]
	nll := Neg(ReduceSum(Mul(logp, onehot), -1))          // [L]
	return Mul(ReduceAllSum(Mul(nll, weight)), scale)     // []
}
