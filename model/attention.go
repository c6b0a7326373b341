package model

import (
	"math"

	"github.com/gomlx/compute/dtypes"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
)

// Blockwise attention, one (query block, key block) pair per graph execution.
//
// Between executions (in Go, and on the wire between workers) tensors are
// token-major, so a block is a run of rows:
//
//	q, dq, do   [Bq, H, Dh]     k, v, dk, dv [Bk, KH, Dh]
//	lse, delta  [Bq, KH, G]     pos, doc     [B] int32: position within the document, and document id
//
// with G = Heads / KVHeads query heads per key/value head (query head h = kh*G + g,
// as Hugging Face's repeat_kv). Inside the graphs they are turned head-major,
// q as [KH, G*Bq, Dh], so that every product runs in the layouts the matmul kernels
// take directly and only the small [B, H, Dh] operands are ever transposed, never
// the [KH, G*Bq, Bk] scores. The running state of a query block stays head-major:
//
//	m, l [KH, G, Bq]            acc [KH, G, Bq, Dh]
//
// A key is visible to a query when both are in the same document and the key's
// position is not after the query's. The mask is added to the scores as a bias
// (0, or maskFill for an invisible key), and a block pair whose keys are all
// visible to all its queries runs a variant with no mask at all (most pairs of a
// long causal sequence). The online softmax keeps the running max m and sum l.
//
// Exactness: an invisible key's term is exp(maskFill - m) = 0 once m is a real
// score. A query that has seen no visible key yet has m = maskFill and collects
// garbage terms of weight 1; the first visible key makes m real and the rescale
// alpha = exp(maskFill - m) = 0 wipes them exactly. Every query sees at least one
// key, itself, so the result is exact. In backward lse is real, so invisible
// terms exp(s + maskFill - lse) are 0.

// maskFill is the bias of an invisible key: far below any real score, but
// finite, so exp(maskFill - maskFill) stays a number.
const maskFill = -1e30

// maskBias: [Bq, Bk], 0 where visible, maskFill elsewhere.
func maskBias(dtype dtypes.DType, qpos, kpos, qdoc, kdoc *Node) *Node {
	g := qpos.Graph()
	return Where(visible(qpos, kpos, qdoc, kdoc), ScalarZero(g, dtype), Scalar(g, dtype, maskFill))
}

// visible: [Bq, Bk] bool, whether each key is in the query's document and not after it.
func visible(qpos, kpos, qdoc, kdoc *Node) *Node {
	sameDoc := Equal(ExpandAxes(qdoc, 1), ExpandAxes(kdoc, 0))
	causal := LessOrEqual(ExpandAxes(kpos, 0), ExpandAxes(qpos, 1))
	return LogicalAnd(sameDoc, causal)
}

// headMajorQ: [Bq, H, Dh] -> [KH, G*Bq, Dh].
func headMajorQ(c Config, q *Node) *Node {
	bq, hd, g := q.Shape().Dimensions[0], c.HeadDimension(), c.Heads/c.KVHeads
	q = TransposeAllAxes(Reshape(q, bq, c.KVHeads, g, hd), 1, 2, 0, 3) // [KH, G, Bq, Dh]
	return Reshape(q, c.KVHeads, g*bq, hd)
}

// headMajorKV: [Bk, KH, Dh] -> [KH, Bk, Dh].
func headMajorKV(k *Node) *Node { return TransposeAllAxes(k, 1, 0, 2) }

// scale is the softmax temperature 1/sqrt(Dh).
func scale(c Config) float64 { return 1 / math.Sqrt(float64(c.HeadDimension())) }

// scores: head-major qh [KH, G*Bq, Dh] (already multiplied by scale: a pass over
// the small q rather than the large scores), kh [KH, Bk, Dh] and an optional
// bias, [Bq, Bk] for every head or [KH, G, Bq, Bk] per head (shifted sparse
// attention, s2attn.go) -> masked scores [KH, G, Bq, Bk] in dt (the softmax
// statistics' dtype: float32 under mixed precision).
func scores(c Config, qh, kh, bias *Node, dt dtypes.DType) *Node {
	bq, bk := qh.Shape().Dimensions[1]/(c.Heads/c.KVHeads), kh.Shape().Dimensions[1]
	s := mm(c, qh, []int{2}, []int{0}, kh, []int{2}, []int{0}, dt) // [KH, G*Bq, Bk]
	s = Reshape(s, c.KVHeads, c.Heads/c.KVHeads, bq, bk)
	if bias != nil {
		if bias.Rank() == 2 {
			bias = ExpandAxes(bias, 0, 1)
		}
		s = Add(s, bias)
	}
	return s
}

// attnFwdBlock folds one key block into the running (m, l, acc) of a query
// block; bias is nil for a fully visible pair.
func attnFwdBlock(c Config, q, k, v, bias, m, l, acc *Node) (m2, l2, acc2 *Node) {
	kv, g, bq, bk, hd := c.KVHeads, c.Heads/c.KVHeads, q.Shape().Dimensions[0], k.Shape().Dimensions[0], c.HeadDimension()
	s := scores(c, MulScalar(headMajorQ(c, q), scale(c)), headMajorKV(k), bias, m.DType())
	m2 = Max(m, ReduceMax(s, -1))
	p := Exp(Sub(s, ExpandAxes(m2, -1))) // [KH, G, Bq, Bk]
	alpha := Exp(Sub(m, m2))
	l2 = Add(Mul(l, alpha), ReduceSum(p, -1))
	pv := mm(c, Reshape(p, kv, g*bq, bk), []int{2}, []int{0}, headMajorKV(v), []int{1}, []int{0}, acc.DType()) // [KH, G*Bq, Dh]
	acc2 = Add(Mul(acc, ExpandAxes(alpha, -1)), Reshape(pv, kv, g, bq, hd))
	return m2, l2, acc2
}

// attnFinish: (m, l, acc) of a query block -> o [Bq, H*Dh] (in the compute
// dtype) and lse [Bq, KH, G].
func attnFinish(c Config, m, l, acc *Node) (o, lse *Node) {
	bq := acc.Shape().Dimensions[2]
	o = Div(acc, ExpandAxes(l, -1))                                   // [KH, G, Bq, Dh]
	o = Reshape(TransposeAllAxes(o, 2, 0, 1, 3), bq, -1)              // [Bq, H*Dh]
	return toCompute(c, o), TransposeAllAxes(Add(m, Log(l)), 2, 0, 1) // [Bq, KH, G]
}

// attnBwdBlock: the contribution of one (query block, key block) pair to dq, dk, dv,
// given the query block's lse and delta = rowsum(do * o) (both [Bq, KH, G]);
// bias is nil for a fully visible pair.
func attnBwdBlock(c Config, q, k, v, bias, do, lse, delta *Node) (dq, dk, dv *Node) {
	kv, g, bq, bk, hd := c.KVHeads, c.Heads/c.KVHeads, q.Shape().Dimensions[0], k.Shape().Dimensions[0], c.HeadDimension()
	dt := lse.DType() // scores, probabilities and every gradient: float32 under mixed precision
	qh, kh, vh, doh := headMajorQ(c, toCompute(c, q)), headMajorKV(toCompute(c, k)), headMajorKV(toCompute(c, v)), headMajorQ(c, toCompute(c, do))
	s := scores(c, MulScalar(qh, scale(c)), kh, bias, dt)
	lseH := ExpandAxes(TransposeAllAxes(lse, 1, 2, 0), -1) // [KH, G, Bq, 1]
	deltaH := ExpandAxes(TransposeAllAxes(delta, 1, 2, 0), -1)
	p := Exp(Sub(s, lseH))                                                                   // [KH, G, Bq, Bk]
	dp := Reshape(mm(c, doh, []int{2}, []int{0}, vh, []int{2}, []int{0}, dt), kv, g, bq, bk) // do v^T
	ds := Mul(p, Sub(dp, deltaH))                                                            // the gradient of the unscaled scores is scale*ds: applied to dq, dk below
	p3, ds3 := toCompute(c, Reshape(p, kv, g*bq, bk)), toCompute(c, Reshape(ds, kv, g*bq, bk))
	// dv^T = do^T p and dk^T = q^T ds, with do^T and q^T made explicitly: the left
	// operand must have its contracting axis last, or the kernel transposes both
	// operands, the [KH, G*Bq, Bk] scores included. Only small tensors move.
	doT, qT := TransposeAllAxes(doh, 0, 2, 1), TransposeAllAxes(qh, 0, 2, 1)                   // [KH, Dh, G*Bq]
	dv = TransposeAllAxes(mm(c, doT, []int{2}, []int{0}, p3, []int{1}, []int{0}, dt), 2, 0, 1) // [Bk, KH, Dh]
	dk = MulScalar(TransposeAllAxes(mm(c, qT, []int{2}, []int{0}, ds3, []int{1}, []int{0}, dt), 2, 0, 1), scale(c))
	dqh := MulScalar(mm(c, ds3, []int{2}, []int{0}, kh, []int{1}, []int{0}, dt), scale(c))   // [KH, G*Bq, Dh]
	dq = Reshape(TransposeAllAxes(Reshape(dqh, kv, g, bq, hd), 2, 0, 1, 3), bq, c.Heads, hd) // [Bq, H, Dh]
	return dq, dk, dv
}

// attnDelta: do, o [Bq, H*Dh] -> rowsum(do * o) per head, [Bq, KH, G].
func attnDelta(c Config, do, o *Node) *Node {
	bq, dt := do.Shape().Dimensions[0], stateDType(c, do.DType())
	return ReduceSum(Reshape(Mul(as(do, dt), as(o, dt)), bq, c.KVHeads, c.Heads/c.KVHeads, c.HeadDimension()), -1)
}
