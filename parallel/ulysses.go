package parallel

import (
	"context"
	"fmt"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// Ulysses is attention with the heads, not the sequence, split across the SP
// ranks for the attention itself (DeepSpeed-Ulysses): an all-to-all turns each
// rank's [Lw, H, Dh] shard of every token into all L tokens of H/SP heads;
// attention runs locally and blockwise over the whole sequence for those heads;
// a second all-to-all turns the output back. Every rank's query heads find
// their key/value heads on the same rank: kv_heads/sp of them when sp divides
// kv_heads; with fewer key/value heads than ranks (sp a multiple of kv_heads,
// as GQA models at high sp need) each rank gets the one its query heads
// share, replicated on rep = sp/kv_heads ranks, and their dK, dV shares are
// summed back in rank order.
//
// Every rank must call Forward and Backward in the same order.
type Ulysses struct {
	local         *model.BlockAttention // over H/SP heads
	inner         headAttention         // what runs over them: local, or a ring of Ulysses groups (Hybrid)
	T             Transport
	Mesh          Mesh
	Wait          *WaitClock // time blocked in the all-to-alls (may be nil)
	n             int
	heads, kvHead int // the model's query and key/value heads
	rep           int // ranks sharing each key/value head (1: none shared)
}

// NewUlysses prepares the head-group attention pieces.
func NewUlysses(full *model.BlockAttention, t Transport, m Mesh) (*Ulysses, error) {
	c := full.P.Config()
	layout := Topology{Workers: m.World, DP: m.DP, SP: m.SP, Strategy: "ulysses", Heads: c.Heads, KVHeads: c.KVHeads}
	if _, err := layout.Mesh(); err != nil {
		return nil, err
	}
	rep, kvLocal := 1, c.KVHeads/m.SP
	if c.KVHeads < m.SP {
		rep, kvLocal = m.SP/c.KVHeads, 1
	}
	p, err := full.P.ForHeads(c.Heads/m.SP, kvLocal)
	if err != nil {
		return nil, err
	}
	// This rank computes head group j of every all-to-all: the model's query
	// heads from j*H/SP on (what shifted sparse attention needs to know).
	_, j := m.Coords(t.Rank())
	local := &model.BlockAttention{P: p, BlockQ: full.BlockQ, BlockK: full.BlockK, Parallel: full.Parallel,
		ShiftGroups: full.ShiftGroups, HeadBase: j * (c.Heads / m.SP), ModelHeads: c.Heads}
	return &Ulysses{local: local, inner: local, T: t, Mesh: m, heads: c.Heads, kvHead: c.KVHeads, rep: rep}, nil
}

// headAttention is attention over this rank's head group, all tokens of the
// Ulysses group: blockwise here, or a ring across the groups.
type headAttention interface {
	Forward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens) (o, lse *tensors.Tensor, err error)
	Backward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error)
}

// scatterKV cuts k or v [Lw, KH*Dh] for the ranks: part j is rank j's key/value
// heads, [Lw, KH/sp, Dh], or the one it shares, [Lw, 1, Dh].
func (u *Ulysses) scatterKV(t *tensors.Tensor, hd int) []*tensors.Tensor {
	if u.rep == 1 {
		return u.scatterHeads(t, u.kvHead, hd)
	}
	lw := t.Shape().Dimensions[0]
	out := make([]*tensors.Tensor, u.Mesh.SP)
	for j := range out {
		h := j / u.rep
		out[j] = host.SliceCols(t, h*hd, (h+1)*hd, lw, 1, hd)
	}
	return out
}

// gatherKV puts the ranks' dK or dV parts [Lw, KH/sp or 1, Dh] back into
// [Lw, KH, Dh]: a key/value head replicated on rep ranks is the sum of their
// parts, added in rank order.
func (u *Ulysses) gatherKV(parts []*tensors.Tensor, lw, hd int) *tensors.Tensor {
	if u.rep == 1 {
		return u.gatherHeads(parts, u.kvHead, hd, lw, u.kvHead, hd)
	}
	out := host.NewZeros(parts[0].DType(), lw, u.kvHead, hd)
	for h := range u.kvHead {
		sum := host.ReshapeCopy(parts[h*u.rep], lw, hd)
		for j := h*u.rep + 1; j < (h+1)*u.rep; j++ {
			host.AddInto(sum, host.ReshapeCopy(parts[j], lw, hd))
		}
		host.SetCols(out, h*hd, sum)
	}
	return out
}

// allToAll exchanges parts within this rank's SP group (see AllToAll).
func (u *Ulysses) allToAll(ctx context.Context, tag string, parts [][]*tensors.Tensor) ([][]*tensors.Tensor, error) {
	defer u.Wait.Since("all-to-all", time.Now())
	return AllToAll(ctx, u.T, u.Mesh.SPGroup(u.T.Rank()), tag, parts)
}

// headCols: per-token columns of head group j for a tensor of `heads` heads of width w.
func headCols(j, heads, sp, w int) (c0, c1 int) {
	per := heads / sp * w
	return j * per, (j + 1) * per
}

// scatterHeads cuts t [Lw, heads*w] by head group: part j is [Lw, heads/sp, w].
func (u *Ulysses) scatterHeads(t *tensors.Tensor, heads, w int) []*tensors.Tensor {
	lw := t.Shape().Dimensions[0]
	out := make([]*tensors.Tensor, u.Mesh.SP)
	for j := range out {
		c0, c1 := headCols(j, heads, u.Mesh.SP, w)
		out[j] = host.SliceCols(t, c0, c1, lw, heads/u.Mesh.SP, w)
	}
	return out
}

// gatherHeads puts parts[j] ([Lw, heads/sp * w]) at head group j of a [Lw, dims...] tensor.
func (u *Ulysses) gatherHeads(parts []*tensors.Tensor, heads, w int, dims ...int) *tensors.Tensor {
	out := host.NewZeros(parts[0].DType(), dims...)
	for j, p := range parts {
		c0, _ := headCols(j, heads, u.Mesh.SP, w)
		host.SetCols(out, c0, p)
	}
	return out
}

// rows splits t's rows into the group's shard lengths (all equal: zigzag).
func splitRows(t *tensors.Tensor, n int) []*tensors.Tensor {
	lw := t.Shape().Dimensions[0] / n
	out := make([]*tensors.Tensor, n)
	for i := range out {
		out[i] = host.SliceRows(t, i*lw, (i+1)*lw)
	}
	return out
}

type gathered struct {
	q, k, v *tensors.Tensor // [L, H/sp, Dh], [L, KH/sp, Dh]
	tok     model.Tokens
}

// toHeads: this rank's tokens of all heads -> all tokens of this rank's heads.
func (u *Ulysses) toHeads(ctx context.Context, tag string, q, k, v *tensors.Tensor, tok model.Tokens, extra ...*tensors.Tensor) (gathered, [][]*tensors.Tensor, error) {
	c := u.local.P.Config()
	hd, sp := c.HeadDimension(), u.Mesh.SP
	H := u.heads
	qs, ks, vs := u.scatterHeads(q, H, hd), u.scatterKV(k, hd), u.scatterKV(v, hd)
	pos, doc := host.Int32s(tok.Pos), host.Int32s(tok.Doc)
	parts := make([][]*tensors.Tensor, sp)
	for j := range parts {
		parts[j] = []*tensors.Tensor{qs[j], ks[j], vs[j], pos, doc}
		for _, e := range extra { // [Lw, H*w] tensors cut by query head group
			w := e.Shape().Dimensions[1] / H
			parts[j] = append(parts[j], host.SliceCols(e, j*(H/sp)*w, (j+1)*(H/sp)*w, e.Shape().Dimensions[0], (H/sp)*w))
		}
	}
	got, err := u.allToAll(ctx, tag, parts)
	if err != nil {
		return gathered{}, nil, err
	}
	var g gathered
	var qq, kk, vv []*tensors.Tensor
	for _, ts := range got {
		qq, kk, vv = append(qq, ts[0]), append(kk, ts[1]), append(vv, ts[2])
		g.tok.Pos = append(g.tok.Pos, tensors.MustCopyFlatData[int32](ts[3])...)
		g.tok.Doc = append(g.tok.Doc, tensors.MustCopyFlatData[int32](ts[4])...)
	}
	g.q, g.k, g.v = host.ConcatRows(qq...), host.ConcatRows(kk...), host.ConcatRows(vv...)
	return g, got, nil
}

// Forward: see trainer.Attention.
func (u *Ulysses) Forward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens) (o, lse *tensors.Tensor, err error) {
	u.n++
	g, _, err := u.toHeads(ctx, fmt.Sprintf("ulysses/%d/in", u.n), q, k, v, tok)
	if err != nil {
		return nil, nil, err
	}
	og, lseg, err := u.inner.Forward(ctx, g.q, g.k, g.v, g.tok)
	if err != nil {
		return nil, nil, err
	}
	// Back: rank i gets its tokens' rows of this head group.
	sp := u.Mesh.SP
	os, ls := splitRows(og, sp), splitRows(lseg, sp)
	parts := make([][]*tensors.Tensor, sp)
	for i := range parts {
		parts[i] = []*tensors.Tensor{os[i], host.ReshapeCopy(ls[i], ls[i].Shape().Dimensions[0], ls[i].Size()/ls[i].Shape().Dimensions[0])}
	}
	got, err := u.allToAll(ctx, fmt.Sprintf("ulysses/%d/out", u.n), parts)
	if err != nil {
		return nil, nil, err
	}
	return u.assemble(got, tok.Len())
}

// assemble puts the head groups' outputs [Lw, (H/sp)*Dh] and lse [Lw, KH/sp*G]
// back into o [Lw, H*Dh], lse [Lw, KH, G].
func (u *Ulysses) assemble(got [][]*tensors.Tensor, lw int) (o, lse *tensors.Tensor, err error) {
	hd := u.local.P.Config().HeadDimension()
	H, KH := u.heads, u.kvHead
	var oParts, lParts []*tensors.Tensor
	for _, ts := range got {
		oParts, lParts = append(oParts, ts[0]), append(lParts, ts[1])
	}
	o = u.gatherHeads(oParts, H, hd, lw, H*hd)
	lse = u.gatherHeads(lParts, H, 1, lw, KH, H/KH) // lse [Lw, KH, G] is [Lw, H] by query head
	return o, lse, nil
}

// Backward: see trainer.Attention.
func (u *Ulysses) Backward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error) {
	u.n++
	c := u.local.P.Config()
	sp := u.Mesh.SP
	H, KH, hd := u.heads, u.kvHead, c.HeadDimension()
	lw := tok.Len()
	lse2 := host.ReshapeCopy(lse, lw, KH*(H/KH)) // [Lw, H]: cut like a [Lw, H*1] tensor
	g, got, err := u.toHeads(ctx, fmt.Sprintf("ulysses/%d/bin", u.n), q, k, v, tok, o, do, lse2)
	if err != nil {
		return nil, nil, nil, err
	}
	var oo, dd, ll []*tensors.Tensor
	for _, ts := range got {
		oo, dd, ll = append(oo, ts[5]), append(dd, ts[6]), append(ll, ts[7])
	}
	L := g.tok.Len()
	og, dog := host.ConcatRows(oo...), host.ConcatRows(dd...)
	lseg := host.ReshapeCopy(host.ConcatRows(ll...), L, c.KVHeads, c.Heads/c.KVHeads)
	dqg, dkg, dvg, err := u.inner.Backward(ctx, g.q, g.k, g.v, g.tok, og, lseg, dog)
	if err != nil {
		return nil, nil, nil, err
	}
	dqs, dks, dvs := splitRows(dqg, sp), splitRows(dkg, sp), splitRows(dvg, sp)
	parts := make([][]*tensors.Tensor, sp)
	for i := range parts {
		parts[i] = []*tensors.Tensor{dqs[i], dks[i], dvs[i]}
	}
	back, err := u.allToAll(ctx, fmt.Sprintf("ulysses/%d/bout", u.n), parts)
	if err != nil {
		return nil, nil, nil, err
	}
	var qP, kP, vP []*tensors.Tensor
	for _, ts := range back {
		qP, kP, vP = append(qP, ts[0]), append(kP, ts[1]), append(vP, ts[2])
	}
	dq = u.gatherHeads(qP, H, hd, lw, H, hd)
	dk, dv = u.gatherKV(kP, lw, hd), u.gatherKV(vP, lw, hd)
	return dq, dk, dv, nil
}
