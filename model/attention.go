package model

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
)

// Blockwise attention, one (query block, key block) pair per graph execution.
//
// Layouts, with G = Heads / KVHeads query heads per key/value head (query head
// h = kh*G + g, as Hugging Face's repeat_kv):
//
//	q, dq, do   [Bq, H, Dh]     k, v, dk, dv [Bk, KH, Dh]
//	m, l, lse   [Bq, KH, G]     acc          [Bq, KH, G, Dh]
//	pos, doc    [B] int32: position within the document, and document id
//
// A key is visible to a query when both are in the same document and the key's
// position is not after the query's. The online softmax keeps the running max m
// and the running sum l; masked scores contribute exactly zero, so a block with no
// visible key leaves (m, l, acc) as they were.

// maskFill is the score given to invisible keys: far below any real score, but finite,
// so exp(maskFill - maskFill) stays a number.
const maskFill = -1e30

// visible: [Bq, Bk] bool.
func visible(qpos, kpos, qdoc, kdoc *Node) *Node {
	sameDoc := Equal(ExpandAxes(qdoc, 1), ExpandAxes(kdoc, 0))
	causal := LessOrEqual(ExpandAxes(kpos, 0), ExpandAxes(qpos, 1))
	return LogicalAnd(sameDoc, causal)
}

// scores: q [Bq, H, Dh], k [Bk, KH, Dh] -> scaled scores [Bq, KH, G, Bk] and the
// mask broadcastable to them.
func scores(c Config, q, k, qpos, kpos, qdoc, kdoc *Node) (s, mask *Node) {
	bq, hd := q.Shape().Dimensions[0], c.HeadDimension()
	q4 := Reshape(q, bq, c.KVHeads, c.Heads/c.KVHeads, hd)
	s = MulScalar(Einsum("qkgd,pkd->qkgp", q4, k), 1/math.Sqrt(float64(hd)))
	mask = ExpandAxes(visible(qpos, kpos, qdoc, kdoc), 1, 2) // [Bq, 1, 1, Bk]
	mask = BroadcastToDims(mask, s.Shape().Dimensions...)
	return s, mask
}

// attnFwdBlock folds one key block into the running (m, l, acc) of a query block.
func attnFwdBlock(c Config, q, k, v, qpos, kpos, qdoc, kdoc, m, l, acc *Node) (m2, l2, acc2 *Node) {
	s, mask := scores(c, q, k, qpos, kpos, qdoc, kdoc)
	fill := Scalar(s.Graph(), s.DType(), maskFill)
	zero := ScalarZero(s.Graph(), s.DType())
	s = Where(mask, s, fill)
	m2 = Max(m, ReduceMax(s, -1))
	p := Where(mask, Exp(Sub(s, ExpandAxes(m2, -1))), zero) // [Bq, KH, G, Bk]
	alpha := Exp(Sub(m, m2))
	l2 = Add(Mul(l, alpha), ReduceSum(p, -1))
	acc2 = Add(Mul(acc, ExpandAxes(alpha, -1)), Einsum("qkgp,pkd->qkgd", p, v))
	return m2, l2, acc2
}

// attnFinish: (m, l, acc) of a query block -> o [Bq, H*Dh] and lse [Bq, KH, G].
func attnFinish(m, l, acc *Node) (o, lse *Node) {
	bq := acc.Shape().Dimensions[0]
	o = Reshape(Div(acc, ExpandAxes(l, -1)), bq, -1)
	return o, Add(m, Log(l))
}

// attnBwdBlock: the contribution of one (query block, key block) pair to dq, dk, dv,
// given the query block's lse and delta = rowsum(do * o) (both [Bq, KH, G]).
func attnBwdBlock(c Config, q, k, v, qpos, kpos, qdoc, kdoc, do, lse, delta *Node) (dq, dk, dv *Node) {
	bq, hd := q.Shape().Dimensions[0], c.HeadDimension()
	g := c.Heads / c.KVHeads
	s, mask := scores(c, q, k, qpos, kpos, qdoc, kdoc)
	zero := ScalarZero(s.Graph(), s.DType())
	fill := Scalar(s.Graph(), s.DType(), maskFill)
	p := Where(mask, Exp(Sub(Where(mask, s, fill), ExpandAxes(lse, -1))), zero) // [Bq, KH, G, Bk]
	do4 := Reshape(do, bq, c.KVHeads, g, hd)
	q4 := Reshape(q, bq, c.KVHeads, g, hd)
	dv = Einsum("qkgp,qkgd->pkd", p, do4)
	dp := Einsum("qkgd,pkd->qkgp", do4, v)
	ds := MulScalar(Mul(p, Sub(dp, ExpandAxes(delta, -1))), 1/math.Sqrt(float64(hd)))
	dq = Reshape(Einsum("qkgp,pkd->qkgd", ds, k), bq, c.Heads, hd)
	dk = Einsum("qkgp,qkgd->pkd", ds, q4)
	return dq, dk, dv
}

// attnDelta: do, o [Bq, H*Dh] -> rowsum(do * o) per head, [Bq, KH, G].
func attnDelta(c Config, do, o *Node) *Node {
	bq := do.Shape().Dimensions[0]
	return ReduceSum(Reshape(Mul(do, o), bq, c.KVHeads, c.Heads/c.KVHeads, c.HeadDimension()), -1)
}
