package parallel

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
)

// LocalTransport is the in-process Transport: the ranks of one job are
// goroutines of one process, each holding one LocalTransport from NewLocal, and
// a Send puts a copy of the tensors straight into the receiver's mailbox. It has
// the gRPC transport's semantics (per (from, tag) FIFO, copying Send, Spec
// checks, Stats counting payload bytes, ctx cancellation, failure) so that
// collectives and schedules can be tested without sockets; Fail simulates a
// lost peer.
//
// Send never blocks: mailboxes are unbounded.
type LocalTransport struct {
	rank      int
	hub       *localHub
	bytesSent atomic.Int64
	closeOnce sync.Once
}

// localHub is what the transports of one NewLocal share.
type localHub struct {
	boxes []*mailbox // boxes[r] holds what was sent to rank r
}

var _ Transport = (*LocalTransport)(nil)

// NewLocal returns the n transports of an in-process job, rank i at index i.
// n < 1 gives none.
func NewLocal(n int) []Transport {
	if n < 1 {
		return nil
	}
	hub := &localHub{boxes: make([]*mailbox, n)}
	ts := make([]Transport, n)
	for r := range n {
		hub.boxes[r] = newMailbox(n)
		ts[r] = &LocalTransport{rank: r, hub: hub}
	}
	return ts
}

func (l *LocalTransport) Rank() int { return l.rank }
func (l *LocalTransport) Size() int { return len(l.hub.boxes) }

func (l *LocalTransport) box() *mailbox { return l.hub.boxes[l.rank] }

// Send copies ts into rank to's mailbox.
func (l *LocalTransport) Send(ctx context.Context, to int, tag string, ts ...*tensors.Tensor) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.box().failure(); err != nil {
		return err
	}
	if to < 0 || to >= l.Size() {
		return fmt.Errorf("parallel: send to rank %d: out of range [0, %d)", to, l.Size())
	}
	msg, err := cloneMessage(to, tag, ts)
	if err != nil {
		return err
	}
	if to != l.rank && l.box().departed(to) {
		return errDeparted(to)
	}
	dst := l.hub.boxes[to]
	dst.put(l.rank, tag, msg)
	l.bytesSent.Add(msg.bytes)
	return nil
}

// Recv takes the oldest message from (from, tag), waiting for it.
func (l *LocalTransport) Recv(ctx context.Context, from int, tag string, want ...Spec) ([]*tensors.Tensor, error) {
	return l.box().recv(ctx, l.Size(), from, tag, want)
}

// Stats counts payload bytes (the tensors' data) and time blocked in Recv.
func (l *LocalTransport) Stats() Stats {
	b := l.box()
	return Stats{
		BytesSent:       l.bytesSent.Load(),
		BytesRecv:       b.bytesRecv.Load(),
		RecvWaitSeconds: time.Duration(b.waitNanos.Load()).Seconds(),
	}
}

// Fail simulates the loss of this rank, as if its process had died: every
// pending and later call on every rank of the job fails with a *PeerError
// naming this rank and wrapping both ErrPeerLost and err (err may be nil).
func (l *LocalTransport) Fail(err error) {
	cause := ErrPeerLost
	if err != nil {
		cause = fmt.Errorf("%w: %w", ErrPeerLost, err)
	}
	for _, b := range l.hub.boxes {
		b.fail(&PeerError{Rank: l.rank, Err: cause})
	}
}

// Close makes this rank's pending and later calls fail with ErrClosed, and the
// other ranks see it leave: their Send to it, and their Recv from it once its
// earlier messages are taken, fail with a PeerError wrapping ErrPeerLost.
func (l *LocalTransport) Close() error {
	l.closeOnce.Do(func() {
		l.box().fail(ErrClosed)
		for r, b := range l.hub.boxes {
			if r != l.rank {
				b.depart(l.rank)
			}
		}
	})
	return nil
}
