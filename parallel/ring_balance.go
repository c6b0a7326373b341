package parallel

import (
	"context"
	"fmt"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// The balancing stage around the ring (see Balancer for the policy). Before the
// ring a rank hands the first `give` of its query rows to the next rank; that
// rank computes them against every visiting block, in their owner's order (the
// owner's own block first, its own block last) and ahead of its own queries,
// since the owner waits for them; after the ring the owner takes the results
// back. Every rank also tells the next one how many rows it gives (msgGive) and
// the previous one how long it computed (msgPace), which is all the balancer
// learns from.

// balancing says whether the stage runs: a ring of one has no next rank to give to.
func (r *RingAttention) balancing() bool { return r.Balance != nil && r.Mesh.SP >= 2 }

// balanceCall is what one Forward or Backward call balances: when it started,
// what this rank gives, and the stage's sends still in flight.
type balanceCall struct {
	r        *RingAttention
	backward bool
	start    time.Time
	give     int                               // this rank's first rows, which the next rank computes
	header   func() ([]*tensors.Tensor, error) // how many rows the previous rank gives
	pending  []func() error
}

func (c *balanceCall) send(wait func() error) { c.pending = append(c.pending, wait) }

// beginBalance starts a call over a shard with tokens tok: it decides what to
// give, tells the next rank, and listens for the previous rank's offer and for
// the next rank's report on this call.
func (r *RingAttention) beginBalance(ctx context.Context, backward bool, tok model.Tokens) *balanceCall {
	r.waited.Store(0)
	c := &balanceCall{r: r, backward: backward, start: time.Now()}
	me := r.T.Rank()
	c.give = r.Balance.rowsToGive(r.n, backward, blockWork(tok, r.Attn.BlockQ), r.Attn.BlockQ, r.Mesh.RingNext(me) == r.Mesh.RingPrev(me))
	c.send(r.sendNext(ctx, msgGive, 0, []*tensors.Tensor{host.Int32s([]int32{int32(c.give)})}))
	c.header = r.recvPrev(ctx, msgGive, 0, []Spec{{DType: "int32", Shape: []int{1}}})
	n, next, tag, bal := r.n, r.Mesh.RingNext(me), r.tag(msgPace, 0), r.Balance
	go func() { // whenever it comes: the balancer acts on it at a later call
		ts, err := r.T.Recv(ctx, next, tag, Spec{DType: "float64", Shape: []int{2}})
		if err == nil {
			p := host.ToFloat64(ts[0])
			bal.report(n, backward, pace{busy: p[0], work: p[1]})
		}
	}()
	return c
}

// offered waits for the number of rows the previous rank gives this call.
func (c *balanceCall) offered(lw int) (int, error) {
	ts, err := c.header()
	if err != nil {
		return 0, err
	}
	rows := int(tensors.MustCopyFlatData[int32](ts[0])[0])
	if rows < 0 || rows >= lw || rows%c.r.Attn.BlockQ != 0 {
		return 0, fmt.Errorf("ring attention: rank %d offers %d query rows of a %d-row shard (whole blocks of %d, not all): %w",
			c.r.Mesh.RingPrev(c.r.T.Rank()), rows, lw, c.r.Attn.BlockQ, ErrProtocol)
	}
	return rows, nil
}

// end waits for the stage's sends, keeps the call's time computing for the
// balancer and reports it to the previous rank, with the work it was.
func (c *balanceCall) end(ctx context.Context) error {
	for _, sent := range c.pending {
		if err := sent(); err != nil {
			return err
		}
	}
	r := c.r
	busy := (time.Since(c.start) - time.Duration(r.waited.Load())).Seconds()
	p := r.Balance.record(r.n, c.backward, busy)
	rep := host.FromFloat64(dtypes.Float64, []float64{p.busy, p.work}, 2)
	if err := r.T.Send(ctx, r.Mesh.RingPrev(r.T.Rank()), r.tag(msgPace, 0), rep); err != nil {
		return fmt.Errorf("ring attention: send %s: %w", r.tag(msgPace, 0), err)
	}
	return nil
}

// fwdBalance is the balancing stage of one Forward call.
type fwdBalance struct {
	*balanceCall
	home   kvMsg              // this rank's own block, the last the taken rows see (never sent: no wire tokens)
	qSpec  Spec               // of this rank's queries, which the taken rows share
	lw     int                // this rank's shard length
	theirs *model.AttnForward // the previous rank's first query rows, taken (nil: none)
}

// balanceForward starts the stage of a Forward call over this rank's block k, v.
func (r *RingAttention) balanceForward(ctx context.Context, k, v *tensors.Tensor, tok model.Tokens) *fwdBalance {
	return &fwdBalance{balanceCall: r.beginBalance(ctx, false, tok), home: kvMsg{k: k, v: v, tok: tok}}
}

// begin hands rows [0, give) to the next rank and starts the rest here.
func (b *fwdBalance) begin(ctx context.Context, q *tensors.Tensor, tok model.Tokens) (*model.AttnForward, error) {
	b.qSpec, b.lw = specOf(q), tok.Len()
	cut := b.give
	if cut > 0 {
		b.send(b.r.sendNext(ctx, msgFQ, 0, []*tensors.Tensor{rowsOf(q, 0, cut), host.Int32s(tok.Pos[:cut]), host.Int32s(tok.Doc[:cut])}))
	}
	return b.r.Attn.Begin(rowsOf(q, cut, b.lw), tok.Slice(cut, b.lw))
}

// visit folds the block into the taken rows, which see it at the owner's step
// s-1: the block held at step 0 is this rank's, the owner's last, and is folded
// at the last step, after which the results go back.
func (b *fwdBalance) visit(ctx context.Context, s int, kv kvMsg) error {
	if s == 1 {
		var err error
		if b.theirs, err = b.take(ctx); err != nil {
			return err
		}
	}
	if b.theirs == nil {
		return nil
	}
	if err := b.theirs.Fold(kv.k, kv.v, kv.tok); err != nil {
		return err
	}
	if s < b.r.Mesh.SP-1 {
		return nil
	}
	if err := b.theirs.Fold(b.home.k, b.home.v, b.home.tok); err != nil {
		return err
	}
	to, tlse, err := b.theirs.Finish()
	if err != nil {
		return err
	}
	b.send(b.r.sendTo(ctx, b.r.Mesh.RingPrev(b.r.T.Rank()), msgFO, 0, []*tensors.Tensor{to, tlse}))
	return nil
}

// take receives the previous rank's offer and starts the attention of the
// query rows it gives (nil when none).
func (b *fwdBalance) take(ctx context.Context) (*model.AttnForward, error) {
	rows, err := b.offered(b.lw)
	if err != nil || rows == 0 {
		return nil, err
	}
	ids := Spec{DType: "int32", Shape: []int{rows}}
	ts, err := b.r.recvPrev(ctx, msgFQ, 0, []Spec{withRows(b.qSpec, rows), ids, ids})()
	if err != nil {
		return nil, err
	}
	tok := givenTokens(ts[1], ts[2])
	b.r.Balance.took(false, rows, sum(blockWork(tok, rows)))
	return b.r.Attn.Begin(ts[0], tok)
}

// finish puts the given rows' results, back from the next rank, before the rest.
func (b *fwdBalance) finish(ctx context.Context, o, lse *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor, error) {
	if b.give > 0 {
		want := []Spec{withRows(specOf(o), b.give), withRows(specOf(lse), b.give)}
		ts, err := b.r.recvFrom(ctx, b.r.Mesh.RingNext(b.r.T.Rank()), msgFO, 0, want)()
		if err != nil {
			return nil, nil, err
		}
		o, lse = joinRows(ts[0], o), joinRows(ts[1], lse)
	}
	return o, lse, b.end(ctx)
}

// bwdBalance is the balancing stage of one Backward call. A rank that gives its
// first query rows sends its other rows' dK, dV partial sum and the sum before
// it apart; the next rank adds the given rows' partials onto the former
// (model.GradParts.SumOnto sums the last block first), then the sum before: the
// order of every addition is the unbalanced one.
type bwdBalance struct {
	*balanceCall
	home      kvMsg               // this rank's own block, the last the taken rows see (never sent)
	q, o, lse Spec                // of this rank's rows, which the taken rows share
	lw        int                 // this rank's shard length
	offer     int                 // rows the previous rank gives, once known (step 1)
	theirs    *model.AttnBackward // the previous rank's first query rows, taken (nil: none)
	heldParts *model.GradParts    // the taken rows' partials for the held block
	homeParts *model.GradParts    // and for this rank's own, at the last step
}

// balanceBackward starts the stage of a Backward call over this rank's block k, v.
func (r *RingAttention) balanceBackward(ctx context.Context, k, v *tensors.Tensor, tok model.Tokens) *bwdBalance {
	return &bwdBalance{balanceCall: r.beginBalance(ctx, true, tok), home: kvMsg{k: k, v: v, tok: tok}}
}

// beginBackward hands rows [0, give) to the next rank and starts the rest here.
func (b *bwdBalance) beginBackward(ctx context.Context, q, o, lse, do *tensors.Tensor, tok model.Tokens) (*model.AttnBackward, error) {
	b.q, b.o, b.lse, b.lw = specOf(q), specOf(o), specOf(lse), tok.Len()
	cut, lw := b.give, b.lw
	if cut > 0 {
		b.send(b.r.sendNext(ctx, msgBQ, 0, []*tensors.Tensor{rowsOf(q, 0, cut), rowsOf(o, 0, cut), rowsOf(lse, 0, cut),
			rowsOf(do, 0, cut), host.Int32s(tok.Pos[:cut]), host.Int32s(tok.Doc[:cut])}))
	}
	return b.r.Attn.BeginBackward(rowsOf(q, cut, lw), tok.Slice(cut, lw), rowsOf(o, cut, lw), rowsOf(lse, cut, lw), rowsOf(do, cut, lw))
}

// visit computes the taken rows' partials for the held block first, since the
// previous rank waits for them; at the last step also those for this rank's
// own block, the last in the owner's order, after which their dq goes back.
func (b *bwdBalance) visit(ctx context.Context, s int, kv kvMsg) error {
	b.heldParts = nil
	if s == 1 {
		if err := b.take(ctx); err != nil {
			return err
		}
	}
	if b.theirs == nil {
		return nil
	}
	var err error
	if b.heldParts, err = b.theirs.GradParts(kv.k, kv.v, kv.tok); err != nil {
		return err
	}
	if s < b.r.Mesh.SP-1 {
		return nil
	}
	if b.homeParts, err = b.theirs.GradParts(b.home.k, b.home.v, b.home.tok); err != nil {
		return err
	}
	b.send(b.r.sendTo(ctx, b.r.Mesh.RingPrev(b.r.T.Rank()), msgBDQ, 0, []*tensors.Tensor{b.theirs.DQ}))
	return nil
}

// take receives the previous rank's offer and the rows it gives, and starts
// their backward.
func (b *bwdBalance) take(ctx context.Context) error {
	rows, err := b.offered(b.lw)
	if err != nil || rows == 0 {
		return err
	}
	b.offer = rows
	ids := Spec{DType: "int32", Shape: []int{rows}}
	want := []Spec{withRows(b.q, rows), withRows(b.o, rows), withRows(b.lse, rows), withRows(b.o, rows), ids, ids}
	ts, err := b.r.recvPrev(ctx, msgBQ, 0, want)()
	if err != nil {
		return err
	}
	tok := givenTokens(ts[4], ts[5])
	b.r.Balance.took(true, rows, sum(blockWork(tok, rows)))
	b.theirs, err = b.r.Attn.BeginBackward(ts[0], tok, ts[1], ts[2], ts[3])
	return err
}

func (b *bwdBalance) sumBefore(msg []*tensors.Tensor) []*tensors.Tensor {
	return sumBefore(msg, b.heldParts)
}

func (b *bwdBalance) homeSum(msg []*tensors.Tensor) []*tensors.Tensor {
	return sumBefore(msg, b.homeParts)
}

// carry sends the sum before apart when giving: the next rank adds the given
// rows' partials in between.
func (b *bwdBalance) carry(dk, dv *tensors.Tensor, before []*tensors.Tensor) []*tensors.Tensor {
	if b.give > 0 {
		return append([]*tensors.Tensor{dk, dv}, before...)
	}
	return plainRing{}.carry(dk, dv, before)
}

// sumSpecs: a previous rank that gives sends its sum in two parts from its
// step 1 on (at step 0 there is no sum before).
func (b *bwdBalance) sumSpecs(s int, grad []Spec) []Spec {
	if b.offer > 0 && s > 0 {
		return append(append([]Spec(nil), grad...), grad...)
	}
	return grad
}

// finishBackward puts the given rows' dq, back from the next rank, before the rest.
func (b *bwdBalance) finishBackward(ctx context.Context, dq *tensors.Tensor) (*tensors.Tensor, error) {
	if b.give > 0 {
		ts, err := b.r.recvFrom(ctx, b.r.Mesh.RingNext(b.r.T.Rank()), msgBDQ, 0, []Spec{withRows(b.q, b.give)})()
		if err != nil {
			return nil, err
		}
		dq = joinRows(ts[0], dq)
	}
	return dq, b.end(ctx)
}

// sumBefore is the dK, dV sum of the ranks before for the held block, from the
// previous rank's message: as it is, or, when that rank gave its first query
// blocks here, its other blocks' partial sum, then the given blocks' partials
// (computed here) added onto it in SumOnto's order, then the sum before that
// rank, if any.
func sumBefore(msg []*tensors.Tensor, given *model.GradParts) []*tensors.Tensor {
	if given == nil {
		return msg
	}
	dk, dv := given.SumOnto(msg[0], msg[1])
	if len(msg) == 4 {
		host.AddInto(dk, msg[2])
		host.AddInto(dv, msg[3])
	}
	return []*tensors.Tensor{dk, dv}
}

// rowsOf is rows [lo, hi) of t (t itself when that is all of it).
func rowsOf(t *tensors.Tensor, lo, hi int) *tensors.Tensor {
	if lo == 0 && hi == t.Shape().Dimensions[0] {
		return t
	}
	return host.SliceRows(t, lo, hi)
}

// joinRows is a's rows, then b's.
func joinRows(a, b *tensors.Tensor) *tensors.Tensor {
	d := a.Shape().Dimensions
	dims := append([]int{d[0] + b.Shape().Dimensions[0]}, d[1:]...)
	out := host.NewZeros(a.DType(), dims...)
	host.SetRows(out, 0, a)
	host.SetRows(out, d[0], b)
	return out
}

// blockWork is, per query block of blockQ rows, the number of keys its queries
// see in the whole sequence under a causal mask within documents (a query at
// position p of its document sees p+1): what the balancer weighs blocks by.
func blockWork(tok model.Tokens, blockQ int) []float64 {
	var w []float64
	for s := 0; s < tok.Len(); s += blockQ {
		var n float64
		for _, p := range tok.Pos[s:min(s+blockQ, tok.Len())] {
			n += float64(p) + 1
		}
		w = append(w, n)
	}
	return w
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

// withRows is spec with its first axis set to n.
func withRows(s Spec, n int) Spec {
	return Spec{DType: s.DType, Shape: append([]int{n}, s.Shape[1:]...)}
}

// givenTokens are the tokens of rows received: positions and document ids.
func givenTokens(pos, doc *tensors.Tensor) model.Tokens {
	return model.Tokens{Pos: tensors.MustCopyFlatData[int32](pos), Doc: tensors.MustCopyFlatData[int32](doc)}
}
