package parallel

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// RingAttention is attention over a sequence sharded across the SP ranks of a
// ring. Each rank holds the queries, keys and values of its own tokens; the key
// and value blocks travel around the ring, and each rank folds every visiting
// block into its queries' online softmax (model.AttnForward) while the next one
// is already in flight. In backward the blocks travel again, each carrying the
// dK and dV accumulated for it so far, and after SP steps they are back home.
//
// With a Balancer, a rank may hand the first of its query blocks to the next
// rank, which computes them along with its own and sends the results back
// (balance.go); the results are bitwise the same.
//
// Every rank must call Forward and Backward in the same order, and either all
// ranks balance or none: the call counter is part of the message tags.
type RingAttention struct {
	Attn    *model.BlockAttention
	T       Transport
	Mesh    Mesh
	Wait    *WaitClock // time blocked on a block not here yet (may be nil)
	Balance *Balancer  // nil: every rank computes its own queries
	n       int        // calls so far, for tags
	waited  atomic.Int64
}

// block is a key/value block on its way around the ring.
type kvMsg struct {
	k, v     *tensors.Tensor
	tok      model.Tokens
	pos, doc *tensors.Tensor
}

func newKV(k, v *tensors.Tensor, tok model.Tokens) kvMsg {
	return kvMsg{k: k, v: v, tok: tok, pos: host.Int32s(tok.Pos), doc: host.Int32s(tok.Doc)}
}

func (r *RingAttention) tag(kind string, step int) string {
	return fmt.Sprintf("ring/%d/%s/%d", r.n, kind, step)
}

// exchange sends ts to the next rank and receives the same kind from the previous
// one, concurrently; call wait() for the received tensors.
func (r *RingAttention) exchange(ctx context.Context, tag string, ts []*tensors.Tensor, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	sent := r.sendNext(ctx, tag, ts)
	got := r.recvPrev(ctx, tag, want)
	return func() ([]*tensors.Tensor, error) {
		res, err := got()
		if serr := sent(); serr != nil {
			return nil, serr
		}
		return res, err
	}
}

// sendNext sends ts to the next rank in the background; call the result to wait.
func (r *RingAttention) sendNext(ctx context.Context, tag string, ts []*tensors.Tensor) (wait func() error) {
	return r.sendTo(ctx, r.Mesh.RingNext(r.T.Rank()), tag, ts)
}

// sendTo sends ts to rank `to` in the background; call the result to wait.
func (r *RingAttention) sendTo(ctx context.Context, to int, tag string, ts []*tensors.Tensor) (wait func() error) {
	errc := make(chan error, 1)
	go func() { errc <- r.T.Send(ctx, to, tag, ts...) }()
	return func() error {
		defer r.blocked("ring send", time.Now())
		if err := <-errc; err != nil {
			return fmt.Errorf("ring attention: send %s: %w", tag, err)
		}
		return nil
	}
}

// recvPrev receives from the previous rank in the background; call the result to
// wait for the tensors. Time spent waiting there is time the step is blocked.
func (r *RingAttention) recvPrev(ctx context.Context, tag string, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	return r.recvFrom(ctx, r.Mesh.RingPrev(r.T.Rank()), tag, want)
}

// recvFrom receives from rank `from` in the background, like recvPrev.
func (r *RingAttention) recvFrom(ctx context.Context, from int, tag string, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	kind := strings.Split(tag, "/")[2] // ring/N/kind/step: kv, bkv, dkv, give, ...
	type result struct {
		ts  []*tensors.Tensor
		err error
	}
	got := make(chan result, 1)
	go func() {
		ts, err := r.T.Recv(ctx, from, tag, want...)
		got <- result{ts, err}
	}()
	return func() ([]*tensors.Tensor, error) {
		defer r.blocked("ring "+kind, time.Now())
		res := <-got
		if res.err != nil {
			return nil, fmt.Errorf("ring attention: receive %s: %w", tag, res.err)
		}
		return res.ts, nil
	}
}

// blocked adds the time since start to the wait clock and to this call's waits.
func (r *RingAttention) blocked(kind string, start time.Time) {
	r.Wait.Since(kind, start)
	r.waited.Add(int64(time.Since(start)))
}

func specOf(t *tensors.Tensor) Spec {
	return Spec{DType: strings.ToLower(t.DType().String()), Shape: t.Shape().Dimensions}
}

func kvSpecs(m kvMsg) []Spec { return []Spec{specOf(m.k), specOf(m.v), specOf(m.pos), specOf(m.doc)} }

func kvFrom(ts []*tensors.Tensor) kvMsg {
	pos := tensors.MustCopyFlatData[int32](ts[2])
	doc := tensors.MustCopyFlatData[int32](ts[3])
	return kvMsg{k: ts[0], v: ts[1], pos: ts[2], doc: ts[3], tok: model.Tokens{Pos: pos, Doc: doc}}
}

// ringCall is one Forward or Backward call: when it started, what this rank
// gives to the next one, and the sends still in flight.
type ringCall struct {
	n        int
	backward bool
	start    time.Time
	give     int                               // this rank's first rows, which the next rank computes
	header   func() ([]*tensors.Tensor, error) // how many rows the previous rank gives (balancing only)
	pending  []func() error
}

func (c *ringCall) send(wait func() error) { c.pending = append(c.pending, wait) }

func (r *RingAttention) balancing() bool { return r.Balance != nil && r.Mesh.SP >= 2 }

// begin starts a call over a shard with tokens tok: with balancing, it decides what
// to give, tells the next rank, and listens for the previous rank's offer and
// for the next rank's report on this call.
func (r *RingAttention) begin(ctx context.Context, backward bool, tok model.Tokens) *ringCall {
	r.n++
	r.waited.Store(0)
	c := &ringCall{n: r.n, backward: backward, start: time.Now()}
	if !r.balancing() {
		return c
	}
	me := r.T.Rank()
	c.give = r.Balance.rowsToGive(c.n, backward, blockWork(tok, r.Attn.BlockQ), r.Attn.BlockQ, r.Mesh.RingNext(me) == r.Mesh.RingPrev(me))
	tag := r.tag("give", 0)
	c.send(r.sendNext(ctx, tag, []*tensors.Tensor{host.Int32s([]int32{int32(c.give)})}))
	c.header = r.recvPrev(ctx, tag, []Spec{{DType: "int32", Shape: []int{1}}})
	next, tag, bal := r.Mesh.RingNext(me), r.tag("pace", 0), r.Balance
	go func() { // whenever it comes: the balancer acts on it at a later call
		ts, err := r.T.Recv(ctx, next, tag, Spec{DType: "float64", Shape: []int{2}})
		if err == nil {
			p := host.ToFloat64(ts[0])
			bal.report(c.n, backward, pace{busy: p[0], work: p[1]})
		}
	}()
	return c
}

// offered waits for the number of rows the previous rank gives this call.
func (r *RingAttention) offered(c *ringCall, lw int) (int, error) {
	ts, err := c.header()
	if err != nil {
		return 0, err
	}
	rows := int(tensors.MustCopyFlatData[int32](ts[0])[0])
	if rows < 0 || rows >= lw || rows%r.Attn.BlockQ != 0 {
		return 0, fmt.Errorf("ring attention: rank %d offers %d query rows of a %d-row shard (whole blocks of %d, not all): %w",
			r.Mesh.RingPrev(r.T.Rank()), rows, lw, r.Attn.BlockQ, ErrProtocol)
	}
	return rows, nil
}

// end waits for the call's sends, keeps its time computing for the balancer and
// reports it to the previous rank, with the work it was.
func (r *RingAttention) end(ctx context.Context, c *ringCall) error {
	for _, sent := range c.pending {
		if err := sent(); err != nil {
			return err
		}
	}
	if !r.balancing() {
		return nil
	}
	busy := (time.Since(c.start) - time.Duration(r.waited.Load())).Seconds()
	p := r.Balance.record(c.n, c.backward, busy)
	rep := host.FromFloat64(dtypes.Float64, []float64{p.busy, p.work}, 2)
	if err := r.T.Send(ctx, r.Mesh.RingPrev(r.T.Rank()), r.tag("pace", 0), rep); err != nil {
		return fmt.Errorf("ring attention: send %s: %w", r.tag("pace", 0), err)
	}
	return nil
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

// Forward: this rank's queries q [Lw, H, Dh] against every rank's keys and
// values (k, v [Lw, KH, Dh] here) -> o [Lw, H*Dh], lse [Lw, KH, G].
// Shards must have equal lengths (zigzag guarantees it).
//
// Balancing, the first query blocks may go to the next rank, and this rank may
// compute the previous rank's first ones: in that rank's order (its own block
// first, this rank's last), before its own queries, since that rank waits for
// them.
func (r *RingAttention) Forward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens) (o, lse *tensors.Tensor, err error) {
	lw := tok.Len()
	c := r.begin(ctx, false, tok)
	cut := c.give // rows [0, cut) go to the next rank
	if cut > 0 {
		c.send(r.sendNext(ctx, r.tag("fq", 0), []*tensors.Tensor{rowsOf(q, 0, cut), host.Int32s(tok.Pos[:cut]), host.Int32s(tok.Doc[:cut])}))
	}
	f, err := r.Attn.Begin(rowsOf(q, cut, lw), tok.Slice(cut, lw))
	if err != nil {
		return nil, nil, err
	}
	var theirs *model.AttnForward // the previous rank's first query blocks
	cur := newKV(k, v, tok)
	last := r.Mesh.SP - 1
	for s := range r.Mesh.SP {
		var wait func() ([]*tensors.Tensor, error)
		if s < last { // the next block is in flight while this one is computed
			wait = r.exchange(ctx, r.tag("kv", s), []*tensors.Tensor{cur.k, cur.v, cur.pos, cur.doc}, kvSpecs(cur))
		}
		if s == 1 && c.header != nil {
			if theirs, err = r.takeForward(ctx, c, specOf(q), lw); err != nil {
				return nil, nil, err
			}
		}
		if theirs != nil {
			if err := theirs.Fold(cur.k, cur.v, cur.tok); err != nil {
				return nil, nil, err
			}
			if s == last {
				if err := theirs.Fold(k, v, tok); err != nil { // this rank's block: the last in the owner's order
					return nil, nil, err
				}
				to, tlse, err := theirs.Finish()
				if err != nil {
					return nil, nil, err
				}
				c.send(r.sendTo(ctx, r.Mesh.RingPrev(r.T.Rank()), r.tag("fo", 0), []*tensors.Tensor{to, tlse}))
			}
		}
		if err := f.Fold(cur.k, cur.v, cur.tok); err != nil {
			return nil, nil, err
		}
		if wait != nil {
			ts, err := wait()
			if err != nil {
				return nil, nil, err
			}
			cur = kvFrom(ts)
		}
	}
	if o, lse, err = f.Finish(); err != nil {
		return nil, nil, err
	}
	if c.give > 0 {
		want := []Spec{withRows(specOf(o), c.give), withRows(specOf(lse), c.give)}
		ts, err := r.recvFrom(ctx, r.Mesh.RingNext(r.T.Rank()), r.tag("fo", 0), want)()
		if err != nil {
			return nil, nil, err
		}
		o, lse = joinRows(ts[0], o), joinRows(ts[1], lse)
	}
	return o, lse, r.end(ctx, c)
}

// takeForward receives the previous rank's offer and starts the attention of
// the query rows it gives (nil when none).
func (r *RingAttention) takeForward(ctx context.Context, c *ringCall, qSpec Spec, lw int) (*model.AttnForward, error) {
	rows, err := r.offered(c, lw)
	if err != nil || rows == 0 {
		return nil, err
	}
	ids := Spec{DType: "int32", Shape: []int{rows}}
	ts, err := r.recvPrev(ctx, r.tag("fq", 0), []Spec{withRows(qSpec, rows), ids, ids})()
	if err != nil {
		return nil, err
	}
	tok := givenTokens(ts[1], ts[2])
	r.Balance.took(false, rows, sum(blockWork(tok, rows)))
	return r.Attn.Begin(ts[0], tok)
}

// Backward: given o, lse and do [Lw, H*Dh] of this rank's queries, returns dq for
// them and dk, dv for this rank's own keys and values, summed over every rank's
// queries.
//
// At step s this rank holds the block that started s ranks back. While it
// computes that block's share of dK, dV, the next block is on its way, and so is
// the sum of what the ranks before added to this block; the new sum then goes on
// to the next rank in the background. After SP steps each block's sum is home.
//
// Balancing, a rank that gives its first query blocks to the next rank sends
// its other blocks' partial sum and the sum before it apart; the next rank adds
// the given blocks' partials onto the others' (model.GradParts.SumOnto sums the
// last block first), then the sum before: the order of every addition is the
// unbalanced one.
func (r *RingAttention) Backward(ctx context.Context, q, k, v *tensors.Tensor, tok model.Tokens, o, lse, do *tensors.Tensor) (dq, dk, dv *tensors.Tensor, err error) {
	lw := tok.Len()
	c := r.begin(ctx, true, tok)
	cut := c.give // rows [0, cut) go to the next rank
	if cut > 0 {
		c.send(r.sendNext(ctx, r.tag("bq", 0), []*tensors.Tensor{rowsOf(q, 0, cut), rowsOf(o, 0, cut), rowsOf(lse, 0, cut),
			rowsOf(do, 0, cut), host.Int32s(tok.Pos[:cut]), host.Int32s(tok.Doc[:cut])}))
	}
	bw, err := r.Attn.BeginBackward(rowsOf(q, cut, lw), tok.Slice(cut, lw), rowsOf(o, cut, lw), rowsOf(lse, cut, lw), rowsOf(do, cut, lw))
	if err != nil {
		return nil, nil, nil, err
	}
	cur := newKV(k, v, tok)
	gradSpecs := []Spec{specOf(k), specOf(v)}
	var (
		inSum      func() ([]*tensors.Tensor, error) // from the previous rank: what the ranks before added to the held block
		offered    int                               // rows the previous rank gives
		theirs     *model.AttnBackward               // their backward
		theirsHome *model.GradParts                  // their partials for this rank's own block
	)
	last := r.Mesh.SP - 1
	for s := range r.Mesh.SP {
		var nextKV func() ([]*tensors.Tensor, error)
		if s < last {
			nextKV = r.exchange(ctx, r.tag("bkv", s), []*tensors.Tensor{cur.k, cur.v, cur.pos, cur.doc}, kvSpecs(cur))
		}
		if s == 1 && offered > 0 {
			if theirs, err = r.takeBackward(ctx, offered, q, o, lse); err != nil {
				return nil, nil, nil, err
			}
		}
		var theirParts *model.GradParts
		if theirs != nil { // first: the previous rank waits for it
			if theirParts, err = theirs.GradParts(cur.k, cur.v, cur.tok); err != nil {
				return nil, nil, nil, err
			}
			if s == last {
				if theirsHome, err = theirs.GradParts(k, v, tok); err != nil { // the last in the owner's order
					return nil, nil, nil, err
				}
				c.send(r.sendTo(ctx, r.Mesh.RingPrev(r.T.Rank()), r.tag("bdq", 0), []*tensors.Tensor{theirs.DQ}))
			}
		}
		parts, err := bw.GradParts(cur.k, cur.v, cur.tok)
		if err != nil {
			return nil, nil, nil, err
		}
		var before []*tensors.Tensor
		if inSum != nil {
			msg, err := inSum()
			if err != nil {
				return nil, nil, nil, err
			}
			before = sumBefore(msg, theirParts)
		}
		dkb, dvb := parts.SumOnto(nil, nil)
		out := []*tensors.Tensor{dkb, dvb}
		switch {
		case c.give > 0: // the next rank adds the given blocks' partials in between
			out = append(out, before...)
		case before != nil:
			host.AddInto(dkb, before[0])
			host.AddInto(dvb, before[1])
		}
		tag := r.tag("dkv", s)
		c.send(r.sendNext(ctx, tag, out))
		if s == 0 && c.header != nil {
			if offered, err = r.offered(c, lw); err != nil {
				return nil, nil, nil, err
			}
		}
		want := gradSpecs
		if offered > 0 && s > 0 {
			want = append(want, gradSpecs...)
		}
		inSum = r.recvPrev(ctx, tag, want)
		if nextKV != nil {
			ts, err := nextKV()
			if err != nil {
				return nil, nil, nil, err
			}
			cur = kvFrom(ts)
		}
	}
	msg, err := inSum() // this rank's own block, with every rank's share
	if err != nil {
		return nil, nil, nil, err
	}
	home := sumBefore(msg, theirsHome)
	dq = bw.DQ
	if c.give > 0 {
		ts, err := r.recvFrom(ctx, r.Mesh.RingNext(r.T.Rank()), r.tag("bdq", 0), []Spec{withRows(specOf(q), c.give)})()
		if err != nil {
			return nil, nil, nil, err
		}
		dq = joinRows(ts[0], dq)
	}
	return dq, home[0], home[1], r.end(ctx, c)
}

// takeBackward receives the rows the previous rank gives and starts their backward.
func (r *RingAttention) takeBackward(ctx context.Context, rows int, q, o, lse *tensors.Tensor) (*model.AttnBackward, error) {
	ids := Spec{DType: "int32", Shape: []int{rows}}
	want := []Spec{withRows(specOf(q), rows), withRows(specOf(o), rows), withRows(specOf(lse), rows), withRows(specOf(o), rows), ids, ids}
	ts, err := r.recvPrev(ctx, r.tag("bq", 0), want)()
	if err != nil {
		return nil, err
	}
	tok := givenTokens(ts[4], ts[5])
	r.Balance.took(true, rows, sum(blockWork(tok, rows)))
	return r.Attn.BeginBackward(ts[0], tok, ts[1], ts[2], ts[3])
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
