package model

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// Shifted sparse attention (S2-Attn, LongLoRA: Chen et al., 2023), a training-time
// restriction that makes long-context fine-tuning cheap. With group size G (even),
// query head h attends to key j only if the key is visible (same document, not
// after the query) and both tokens are in the same group of in-document positions
// p (Tokens.Pos):
//
//	the first half of the model's query heads  group = floor(p / G)
//	the second half                             group = floor((p + G/2) / G)
//
// The shifted groups straddle the unshifted ones' boundaries, so information
// crosses them from layer to layer. Unlike LongLoRA's roll of half the heads by
// G/2 tokens, a shifted group never wraps the end of a sequence onto its start:
// the first shifted group of a document is G/2 long, and attention stays causal.
// Evaluation and generation use full attention.
//
// The host gives every token its two group ids (a [2, B] int32 tensor: unshifted,
// shifted); the graph compares them and gives each query head the bias of its
// half, [KH, G, Bq, Bk]. Blockwise, a pair none of whose queries sees any of its
// keys under either half's groups is skipped: that is the compute S2 saves. A
// pair every query sees every key of under both is fully visible and runs the
// unmasked kernel; any other runs the S2 kernel.

// docGroup is a token's document and group: under S2, what document ids are to
// full attention (tokens of different ones never see each other).
type docGroup struct{ doc, group int32 }

// s2Groups: each token's group ids under groups of g positions, as the graph
// takes them ([2, B] int32: unshifted, shifted) and as visibilityBy does (per half).
func s2Groups(t Tokens, g int) (*tensors.Tensor, [2][]docGroup) {
	n := t.Len()
	flat := make([]int32, 2*n)
	var keys [2][]docGroup
	for half, shift := range []int32{0, int32(g / 2)} {
		keys[half] = make([]docGroup, n)
		for i, p := range t.Pos {
			grp := (p + shift) / int32(g)
			flat[half*n+i] = grp
			keys[half][i] = docGroup{t.Doc[i], grp}
		}
	}
	return tensors.FromFlatDataAndDimensions(flat, 2, n), keys
}

// s2Bias: [KH, G, Bq, Bk], the bias of each query head under its half's groups:
// heads [0, unshifted) compare row 0 of qgrp and kgrp ([2, B] int32), the rest row 1.
func s2Bias(c Config, dtype dtypes.DType, qpos, kpos, qdoc, kdoc, qgrp, kgrp *Node, unshifted int) *Node {
	g := qpos.Graph()
	bq, bk := qpos.Shape().Dimensions[0], kpos.Shape().Dimensions[0]
	vis := visible(qpos, kpos, qdoc, kdoc)
	var parts []*Node
	for half, n := range []int{unshifted, c.Heads - unshifted} {
		if n == 0 {
			continue
		}
		qg := Reshape(Slice(qgrp, AxisRange(half, half+1), AxisRange()), bq)
		kg := Reshape(Slice(kgrp, AxisRange(half, half+1), AxisRange()), bk)
		same := LogicalAnd(vis, Equal(ExpandAxes(qg, 1), ExpandAxes(kg, 0))) // [Bq, Bk]
		parts = append(parts, BroadcastToDims(ExpandAxes(same, 0), n, bq, bk))
	}
	cond := parts[0]
	if len(parts) > 1 {
		cond = Concatenate(parts, 0) // [H, Bq, Bk], head h = kh*G + g
	}
	bias := Where(cond, ScalarZero(g, dtype), Scalar(g, dtype, maskFill))
	return Reshape(bias, c.KVHeads, c.Heads/c.KVHeads, bq, bk)
}

// s2Kernels are the S2 forward and backward block kernels for one split of the
// query heads between the halves.
type s2Kernels struct{ fwd, bwd *Exec }

// s2 returns (compiling them on first use) the S2 kernels whose first
// `unshifted` query heads take the unshifted groups.
func (p *Pieces) s2(unshifted int) (s2Kernels, error) {
	p.s2mu.Lock()
	defer p.s2mu.Unlock()
	if k, ok := p.s2execs[unshifted]; ok {
		return k, nil
	}
	c := p.cfg
	// in: q, k, v, qpos, kpos, qdoc, kdoc, qgrp, kgrp, m, l, acc -> m, l, acc
	fwd, err := NewExec(p.backend, func(in []*Node) []*Node {
		bias := s2Bias(c, in[0].DType(), in[3], in[4], in[5], in[6], in[7], in[8], unshifted)
		m, l, acc := attnFwdBlock(c, in[0], in[1], in[2], bias, in[9], in[10], in[11])
		return []*Node{m, l, acc}
	})
	if err != nil {
		return s2Kernels{}, fmt.Errorf("model: piece AttnBlockS2: %w", err)
	}
	// in: q, k, v, qpos, kpos, qdoc, kdoc, qgrp, kgrp, do, lse, delta -> dq, dk, dv
	bwd, err := NewExec(p.backend, func(in []*Node) []*Node {
		bias := s2Bias(c, in[0].DType(), in[3], in[4], in[5], in[6], in[7], in[8], unshifted)
		dq, dk, dv := attnBwdBlock(c, in[0], in[1], in[2], bias, in[9], in[10], in[11])
		return []*Node{dq, dk, dv}
	})
	if err != nil {
		return s2Kernels{}, fmt.Errorf("model: piece AttnBlockGradS2: %w", err)
	}
	k := s2Kernels{fwd.WithName("AttnBlockS2").SetMaxCache(64), bwd.WithName("AttnBlockGradS2").SetMaxCache(64)}
	if p.s2execs == nil {
		p.s2execs = map[int]s2Kernels{}
	}
	p.s2execs[unshifted] = k
	return k, nil
}

// unshifted is how many of P's query heads, the first ones, take the unshifted
// groups: those among the model's first half.
func (b *BlockAttention) unshifted() int {
	h := b.P.Config().Heads
	all := b.ModelHeads
	if all == 0 {
		all = h
	}
	return min(max(all/2-b.HeadBase, 0), h)
}

// s2PairMask is pairMask under S2: a pair is skipped when no query head sees any
// of its keys, and fully visible when every head sees every key.
func (b *BlockAttention) s2PairMask(qb, kb block) (mask *PairMask, skip bool) {
	n0 := b.unshifted()
	anyVis, allVis := false, true
	for half, n := range []int{n0, b.P.Config().Heads - n0} {
		if n == 0 {
			continue // no head of this schedule takes this half's groups
		}
		a, all := visibilityBy(qb.tok.Pos, qb.keys[half], kb.tok.Pos, kb.keys[half])
		anyVis, allVis = anyVis || a, allVis && all
	}
	switch {
	case !anyVis:
		return nil, true
	case allVis:
		return nil, false
	}
	return &PairMask{QPos: qb.pos, KPos: kb.pos, QDoc: qb.doc, KDoc: kb.doc, QGroup: qb.grp, KGroup: kb.grp, Unshifted: n0}, false
}
