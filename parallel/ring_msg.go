package parallel

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// msgKind is what a ring attention message carries. With the call and the ring
// step it names the message on the wire (RingAttention.tag), and a wait for it
// is booked on the WaitClock under "ring <kind>".
type msgKind uint8

const (
	msgKV   msgKind = iota // forward: a key/value block on its way around the ring
	msgBKV                 // backward: the same block on its second trip
	msgDKV                 // backward: the dK, dV the ranks so far added to a block
	msgGive                // balancing: how many query rows this rank hands the next one
	msgPace                // balancing: a rank's seconds computing and work done, to the previous rank
	msgFQ                  // balancing, forward: the query rows handed over, with their tokens
	msgFO                  // balancing, forward: their o and lse, back to their owner
	msgBQ                  // balancing, backward: the rows handed over (q, o, lse, do), with their tokens
	msgBDQ                 // balancing, backward: their dq, back to their owner
)

// The names are part of the wire (tags) and of the WaitClock's kinds: a peer
// and a benchmark report both read them.
var msgKindNames = [...]string{
	msgKV: "kv", msgBKV: "bkv", msgDKV: "dkv",
	msgGive: "give", msgPace: "pace", msgFQ: "fq", msgFO: "fo", msgBQ: "bq", msgBDQ: "bdq",
}

// String is the kind's name in tags and wait kinds.
func (k msgKind) String() string {
	if int(k) < len(msgKindNames) {
		return msgKindNames[k]
	}
	return fmt.Sprintf("msgKind(%d)", uint8(k))
}

// tag is the one place a message's wire name is made: the transport matches
// messages by tag, so the call counter keeps one call's messages from being
// taken for another's, and the step one step's from the next.
func (r *RingAttention) tag(kind msgKind, step int) string {
	return fmt.Sprintf("ring/%d/%s/%d", r.n, kind, step)
}

// kvMsg is a key/value block on its way around the ring, with its tokens both
// as the model reads them and as they travel.
type kvMsg struct {
	k, v     *tensors.Tensor
	tok      model.Tokens
	pos, doc *tensors.Tensor
}

func newKV(k, v *tensors.Tensor, tok model.Tokens) kvMsg {
	return kvMsg{k: k, v: v, tok: tok, pos: host.Int32s(tok.Pos), doc: host.Int32s(tok.Doc)}
}

func (m kvMsg) tensors() []*tensors.Tensor { return []*tensors.Tensor{m.k, m.v, m.pos, m.doc} }

func kvSpecs(m kvMsg) []Spec { return []Spec{specOf(m.k), specOf(m.v), specOf(m.pos), specOf(m.doc)} }

func kvFrom(ts []*tensors.Tensor) kvMsg {
	pos := tensors.MustCopyFlatData[int32](ts[2])
	doc := tensors.MustCopyFlatData[int32](ts[3])
	return kvMsg{k: ts[0], v: ts[1], pos: ts[2], doc: ts[3], tok: model.Tokens{Pos: pos, Doc: doc}}
}

func specOf(t *tensors.Tensor) Spec {
	return Spec{DType: strings.ToLower(t.DType().String()), Shape: t.Shape().Dimensions}
}

// exchange sends ts to the next rank and receives the same kind from the previous
// one, concurrently; call wait() for the received tensors.
func (r *RingAttention) exchange(ctx context.Context, kind msgKind, step int, ts []*tensors.Tensor, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	sent := r.sendNext(ctx, kind, step, ts)
	got := r.recvPrev(ctx, kind, step, want)
	return func() ([]*tensors.Tensor, error) {
		res, err := got()
		if serr := sent(); serr != nil {
			return nil, serr
		}
		return res, err
	}
}

// sendNext sends ts to the next rank in the background; call the result to wait.
func (r *RingAttention) sendNext(ctx context.Context, kind msgKind, step int, ts []*tensors.Tensor) (wait func() error) {
	return r.sendTo(ctx, r.Mesh.RingNext(r.T.Rank()), kind, step, ts)
}

// sendTo sends ts to rank `to` in the background; call the result to wait.
func (r *RingAttention) sendTo(ctx context.Context, to int, kind msgKind, step int, ts []*tensors.Tensor) (wait func() error) {
	tag := r.tag(kind, step)
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
func (r *RingAttention) recvPrev(ctx context.Context, kind msgKind, step int, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	return r.recvFrom(ctx, r.Mesh.RingPrev(r.T.Rank()), kind, step, want)
}

// recvFrom receives from rank `from` in the background, like recvPrev.
func (r *RingAttention) recvFrom(ctx context.Context, from int, kind msgKind, step int, want []Spec) (wait func() ([]*tensors.Tensor, error)) {
	tag := r.tag(kind, step)
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
		defer r.blocked("ring "+kind.String(), time.Now())
		res := <-got
		if res.err != nil {
			return nil, fmt.Errorf("ring attention: receive %s: %w", tag, res.err)
		}
		return res.ts, nil
	}
}

// blocked adds the time since start to the wait clock and to this call's waits
// (what the balancer takes off a call's time to find its time computing).
func (r *RingAttention) blocked(kind string, start time.Time) {
	r.Wait.Since(kind, start)
	r.waited.Add(int64(time.Since(start)))
}
