package parallel

import (
	"context"
	"errors"
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"
)

// Transport moves tensors between the ranks of one job. It is the only part of
// parallel that differs between processes on one machine, machines, and the
// in-process fake used by unit tests: everything collective (all-reduce,
// all-gather, all-to-all, the ring schedules) is built on Send and Recv.
//
// Messages from one rank to another are delivered in the order they were sent.
// A receiver matches them by (from, tag): Recv(from, tag) returns the oldest
// undelivered message from that rank with that tag, waiting for it if needed,
// so a schedule may receive tags in a different order than they were sent.
//
// All methods must be safe for concurrent use. After any transport failure
// (a peer's process died, a stream broke, a malformed frame arrived) every
// pending and later call returns an error wrapping ErrPeerLost or ErrProtocol
// that names the rank involved; nothing blocks forever. Cancelling ctx makes the
// call return ctx's error.
type Transport interface {
	// Rank is this process's rank, in [0, Size).
	Rank() int
	// Size is the number of ranks.
	Size() int
	// Send delivers ts to rank `to` under tag. It may return before the peer has
	// received them, but the tensors' data has been copied (the caller may reuse
	// them). Sending to oneself is allowed.
	Send(ctx context.Context, to int, tag string, ts ...*tensors.Tensor) error
	// Recv returns the tensors of the oldest message from rank `from` with tag.
	// If want is not empty, the message must hold exactly len(want) tensors of
	// those dtypes and shapes, or Recv fails with an ErrProtocol error naming the
	// peer, the tag and both shapes; that message is consumed, and the
	// transport stays usable.
	Recv(ctx context.Context, from int, tag string, want ...Spec) ([]*tensors.Tensor, error)
	// Stats are the bytes moved and the time spent waiting in Recv so far.
	Stats() Stats
	// Close releases the transport; pending and later calls fail (with
	// ErrClosed, unless a failure came first). Its peers see it leave: their
	// calls with this rank fail with a PeerError wrapping ErrPeerLost, a Recv
	// only once the messages sent before Close are taken.
	Close() error
}

// Spec is the expected dtype and shape of a received tensor. Shape is compared
// exactly, axis by axis: nil and []int{} both mean a scalar (there is no
// "any shape").
type Spec struct {
	DType string // "float32", "float64", "int32"; "" accepts any
	Shape []int
}

// Stats count what a transport has done. Bytes are payload bytes (the tensors'
// data, not framing); a message to oneself counts as both sent and received.
type Stats struct {
	BytesSent, BytesRecv int64
	RecvWaitSeconds      float64 // time Recv spent blocked waiting for data
}

var (
	// ErrPeerLost: a peer's connection broke or its process died.
	ErrPeerLost = errors.New("peer lost")
	// ErrProtocol: a peer sent something malformed or unexpected.
	ErrProtocol = errors.New("protocol error")
)

// PeerError is a transport failure attributed to one rank.
type PeerError struct {
	Rank int
	Err  error // wraps ErrPeerLost or ErrProtocol
}

func (e *PeerError) Error() string { return fmt.Sprintf("rank %d: %v", e.Rank, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }
