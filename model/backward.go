package model

import (
	"github.com/gomlx/compute/dtypes"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
)

// Hand-written backward passes of PreAttn and PostAttn.
//
// Autodiff of a token-major linear layer y = x W^T forms the weight gradient
// dy^T x with the token axis as the contracting axis of the left operand; the Go
// backend's matmul wants it last, so it transposes both [L, out] and [L, in]
// activations for every weight, and its 2-D transpose costs more than the matmul
// (measured: 43% of PostAttnVJP). Here the weight gradients are formed as
// (x^T dy)^T with x^T made once per layer input, so only [L, D] activations and
// the weights themselves are transposed. TestGradientsMatchFloat64Reference
// checks these against autodiff of a plain model.

// rmsNormParts: the normalized n = h * r and r = 1/sqrt(mean(h^2)+eps) [L, 1].
func rmsNormParts(h *Node, eps float64) (n, r *Node) {
	r = Inverse(Sqrt(AddScalar(ReduceAndKeep(Square(h), ReduceMean, -1), eps)))
	return Mul(h, r), r
}

// rmsNormBwd: upstream dx of x = n * w -> dh, dw.
func rmsNormBwd(dx, n, r, w *Node) (dh, dw *Node) {
	dn := Mul(dx, ExpandAxes(w, 0))
	dw = ReduceSum(Mul(dx, n), 0)
	proj := ReduceAndKeep(Mul(dn, n), ReduceMean, -1)
	return Mul(r, Sub(dn, Mul(n, proj))), dw
}

// rmsNormBwdInput is rmsNormBwd's dh alone, for a norm that does not train.
func rmsNormBwdInput(dx, n, r, w *Node) *Node {
	dn := Mul(dx, ExpandAxes(w, 0))
	proj := ReduceAndKeep(Mul(dn, n), ReduceMean, -1)
	return Mul(r, Sub(dn, Mul(n, proj)))
}

// normBwd returns dh, and dw when trainNorm.
func normBwd(trainNorm bool, dx, n, r, w *Node) []*Node {
	if trainNorm {
		dh, dw := rmsNormBwd(dx, n, r, w)
		return []*Node{dh, dw}
	}
	return []*Node{rmsNormBwdInput(dx, n, r, w)}
}

// transpose2: [a, b] -> [b, a].
func transpose2(x *Node) *Node { return TransposeAllAxes(x, 1, 0) }

// weightGrad: xT [in, L], dy [L, out] -> dW [out, in] = (x^T dy)^T, in dt.
func weightGrad(c Config, xT, dy *Node, dt dtypes.DType) *Node {
	return transpose2(mm(c, xT, []int{1}, nil, dy, []int{0}, nil, dt))
}

// inputGrad: dy [L, out], w [out, in] -> dx [L, in] = dy W, in w's dtype.
func inputGrad(c Config, dy, w *Node) *Node {
	return mm(c, dy, []int{1}, nil, w, []int{0}, nil, w.DType())
}

// ropeBwd is the adjoint of rope: z*cos + rot(z)*sin with rot(z) = [-z2, z1]
// gives dz = dy*cos + rot^T(dy*sin), rot^T(y) = [y2, -y1].
func ropeBwd(dy, cos, sin *Node) *Node {
	half := dy.Shape().Dimensions[2] / 2
	ys := Mul(dy, ExpandAxes(sin, 1))
	y1 := Slice(ys, AxisRange(), AxisRange(), AxisRange(0, half))
	y2 := Slice(ys, AxisRange(), AxisRange(), AxisRangeToEnd(half))
	return Add(Mul(dy, ExpandAxes(cos, 1)), Concatenate([]*Node{y2, Neg(y1)}, -1))
}

// preAttnBwd: the VJP of preAttn. dq [L, H, Dh], dk, dv [L, KH, Dh] ->
// dh, dnormW, dwq, dwk, dwv, and with Config.QKVBias dbq, dbk, dbv. A bias
// adds after the projection, so its gradient is the projection's output
// gradient summed over tokens, and the forward's biases are not needed here.
func preAttnBwd(c Config, h, normW, wq, wk, wv, cos, sin, dq, dk, dv *Node) []*Node {
	L, dt := h.Shape().Dimensions[0], h.DType() // dt: the weights' dtype, which every gradient is in
	n, r := rmsNormParts(h, c.NormEps)
	x := Mul(n, ExpandAxes(normW, 0))
	xT := transpose2(x)
	dqz := Reshape(ropeBwd(as(dq, dt), cos, sin), L, -1)
	dkz := Reshape(ropeBwd(as(dk, dt), cos, sin), L, -1)
	dvz := Reshape(as(dv, dt), L, -1)
	dx := Add(Add(inputGrad(c, dqz, wq), inputGrad(c, dkz, wk)), inputGrad(c, dvz, wv))
	dh, dnorm := rmsNormBwd(dx, n, r, normW)
	outs := []*Node{dh, dnorm, weightGrad(c, xT, dqz, dt), weightGrad(c, xT, dkz, dt), weightGrad(c, xT, dvz, dt)}
	if c.QKVBias {
		outs = append(outs, ReduceSum(dqz, 0), ReduceSum(dkz, 0), ReduceSum(dvz, 0))
	}
	return outs
}

// postAttnFwd is postAttn's forward as its backward reads it: the norm parts
// n, r [L, D] of the residual h2 = h + o Wo^T, the MLP input x [L, D], and the
// SwiGLU's gate g, up u, sg = sigmoid(g), s = silu(g) and m = s*u [L, F].
type postAttnFwd struct{ n, r, x, g, u, sg, s, m *Node }

// postAttnParts recomputes postAttn's forward up to the down projection (bo:
// the output projection's bias, nil without).
func postAttnParts(c Config, h, o, wo, bo, normW, wg, wu *Node) postAttnFwd {
	h2 := Add(h, addBias(linear(c, o, wo), bo))
	n, r := rmsNormParts(h2, c.NormEps)
	x := Mul(n, ExpandAxes(normW, 0))
	g, u := linear(c, x, wg), linear(c, x, wu)
	sg := Sigmoid(g)
	s := Mul(g, sg)
	return postAttnFwd{n: n, r: r, x: x, g: g, u: u, sg: sg, s: s, m: Mul(s, u)}
}

// swiGLUBwd pulls dy [L, D] back through postAttn's MLP and its norm to the
// residual h2: dh2 [L, D], dnormW (nil unless trainNorm) and the gate's and up
// projection's output gradients dg, du [L, F], from which their weights'
// gradients follow. Both postAttn VJPs, plain and LoRA, run it.
func swiGLUBwd(c Config, f postAttnFwd, trainNorm bool, normW, wg, wu, wd, dy *Node) (dh2, dnormW, dg, du *Node) {
	dm := inputGrad(c, dy, wd)
	du = Mul(dm, f.s)
	dg = Mul(Mul(dm, f.u), Mul(f.sg, OnePlus(Mul(f.g, OneMinus(f.sg))))) // silu'(g) = sg * (1 + g*(1-sg))
	dx := Add(inputGrad(c, dg, wg), inputGrad(c, du, wu))
	nb := normBwd(trainNorm, dx, f.n, f.r, normW)
	if trainNorm {
		dnormW = nb[1]
	}
	return Add(dy, nb[0]), dnormW, dg, du // the residual carries dy straight through
}

// postAttnBwd: the VJP of postAttn, recomputing its forward. dy [L, D] ->
// dh, do, dwo, dnormW, dwg, dwu, dwd, and dbo when bo is not nil.
func postAttnBwd(c Config, h, o, wo, bo, normW, wg, wu, wd, dy *Node) []*Node {
	dt := h.DType()
	f := postAttnParts(c, h, o, wo, bo, normW, wg, wu)
	dWd := weightGrad(c, transpose2(f.m), dy, dt) // m^T is [F, L]: one transpose of the MLP width
	dh2, dnorm, dg, du := swiGLUBwd(c, f, true, normW, wg, wu, wd, dy)
	xT := transpose2(f.x)
	outs := []*Node{
		dh2,                                   // dh: the residual carries dh2 straight through
		inputGrad(c, dh2, wo),                 // do
		weightGrad(c, transpose2(o), dh2, dt), // dwo
		dnorm,                                 // dnormW
		weightGrad(c, xT, dg, dt),             // dwg
		weightGrad(c, xT, du, dt),             // dwu
		dWd,                                   // dwd
	}
	if bo != nil {
		outs = append(outs, ReduceSum(dh2, 0)) // dbo: the bias adds into the residual h2
	}
	return outs
}
