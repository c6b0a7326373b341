package parallel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
)

// ErrClosed is returned by calls on a transport after its own Close. (A peer's
// Close is seen as a PeerError wrapping ErrPeerLost.)
var ErrClosed = errors.New("parallel: transport closed")

// message is one Send's tensors, as delivered to the receiver.
type message struct {
	ts    []*tensors.Tensor
	bytes int64 // payload bytes, for Stats
}

type mailKey struct {
	from int
	tag  string
}

// mailbox holds the messages delivered to one rank until Recv takes them. Both
// transports use it: the in-process one puts into the receiver's mailbox
// directly, the gRPC one from the goroutine that reads each peer's stream. It is
// unbounded, so the goroutines filling it never wait for a Recv caller.
//
// All methods are safe for concurrent use.
type mailbox struct {
	mu      sync.Mutex
	queues  map[mailKey][]message // FIFO per (from, tag)
	err     error                 // once set, every take fails with it
	gone    []bool                // gone[r]: rank r closed its transport; nothing more will come
	changed chan struct{}         // closed and replaced whenever any of the above changes

	bytesRecv atomic.Int64
	waitNanos atomic.Int64 // time take spent blocked
}

func newMailbox(size int) *mailbox {
	return &mailbox{
		queues:  make(map[mailKey][]message),
		gone:    make([]bool, size),
		changed: make(chan struct{}),
	}
}

// signalLocked wakes every waiting take. m.mu must be held.
func (m *mailbox) signalLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// put appends msg to the (from, tag) queue and counts its bytes as received.
// It is dropped if the mailbox failed.
func (m *mailbox) put(from int, tag string, msg message) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return
	}
	m.bytesRecv.Add(msg.bytes) // before Recv can see msg
	k := mailKey{from, tag}
	m.queues[k] = append(m.queues[k], msg)
	m.signalLocked()
}

// fail makes every pending and later take return err. The first error wins;
// fail reports whether err was it.
func (m *mailbox) fail(err error) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false
	}
	m.err = err
	m.queues = nil // the messages can no longer be received: let them go
	m.signalLocked()
	return true
}

// failure is the error set by fail, or nil.
func (m *mailbox) failure() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// depart records that rank from closed its transport: once its queued messages
// are taken, a take from it fails instead of waiting.
func (m *mailbox) depart(from int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gone[from] = true
	m.signalLocked()
}

// departed reports whether rank r closed its transport.
func (m *mailbox) departed(r int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gone[r]
}

// errDeparted is the error for an exchange with a rank that closed its transport.
func errDeparted(r int) error {
	return &PeerError{Rank: r, Err: fmt.Errorf("%w: rank %d closed its transport", ErrPeerLost, r)}
}

// take removes and returns the oldest message from (from, tag), waiting for one.
func (m *mailbox) take(ctx context.Context, from int, tag string) (message, error) {
	var waitStart time.Time
	defer func() {
		if !waitStart.IsZero() {
			m.waitNanos.Add(int64(time.Since(waitStart)))
		}
	}()
	k := mailKey{from, tag}
	for {
		if err := ctx.Err(); err != nil {
			return message{}, err
		}
		m.mu.Lock()
		if m.err != nil {
			err := m.err
			m.mu.Unlock()
			return message{}, err
		}
		if q := m.queues[k]; len(q) > 0 {
			msg := q[0]
			if len(q) == 1 {
				delete(m.queues, k)
			} else {
				q[0] = message{}
				m.queues[k] = q[1:]
			}
			m.mu.Unlock()
			return msg, nil
		}
		if m.gone[from] {
			m.mu.Unlock()
			return message{}, errDeparted(from)
		}
		changed := m.changed
		m.mu.Unlock()
		if waitStart.IsZero() {
			waitStart = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
	}
}

// recv is Transport.Recv over a mailbox of a job of size ranks.
func (m *mailbox) recv(ctx context.Context, size, from int, tag string, want []Spec) ([]*tensors.Tensor, error) {
	if from < 0 || from >= size {
		return nil, fmt.Errorf("parallel: recv from rank %d: out of range [0, %d)", from, size)
	}
	msg, err := m.take(ctx, from, tag)
	if err != nil {
		return nil, err
	}
	if err := checkSpecs(from, tag, msg.ts, want); err != nil {
		return nil, err
	}
	return msg.ts, nil
}

// checkSpecs checks a received message against the Specs Recv was given.
// An empty want accepts anything. Spec.Shape is compared exactly: nil and
// []int{} both mean a scalar.
func checkSpecs(from int, tag string, ts []*tensors.Tensor, want []Spec) error {
	if len(want) == 0 {
		return nil
	}
	if len(ts) != len(want) {
		return &PeerError{Rank: from, Err: fmt.Errorf("%w: tag %q: got %d tensors %s, want %d %s",
			ErrProtocol, tag, len(ts), describeTensors(ts), len(want), describeSpecs(want))}
	}
	for i, t := range ts {
		w := want[i]
		name := wireDTypeName(t.DType())
		if (w.DType != "" && w.DType != name) || !slices.Equal(t.Shape().Dimensions, w.Shape) {
			return &PeerError{Rank: from, Err: fmt.Errorf("%w: tag %q: tensor %d is %s%v, want %s%v",
				ErrProtocol, tag, i, name, t.Shape().Dimensions, specDTypeOrAny(w.DType), w.Shape)}
		}
	}
	return nil
}

func specDTypeOrAny(d string) string {
	if d == "" {
		return "any"
	}
	return d
}

func describeTensors(ts []*tensors.Tensor) string {
	s := "["
	for i, t := range ts {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s%v", wireDTypeName(t.DType()), t.Shape().Dimensions)
	}
	return s + "]"
}

func describeSpecs(want []Spec) string {
	s := "["
	for i, w := range want {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s%v", specDTypeOrAny(w.DType), w.Shape)
	}
	return s + "]"
}

// The dtypes that travel, with their codes on the wire (see grpc_frame.go).
const (
	wireFloat32 uint8 = 1
	wireFloat64 uint8 = 2
	wireInt32   uint8 = 3
)

// wireCode is the wire code of d, or 0 if d does not travel.
func wireCode(d dtypes.DType) uint8 {
	switch d {
	case dtypes.Float32:
		return wireFloat32
	case dtypes.Float64:
		return wireFloat64
	case dtypes.Int32:
		return wireInt32
	}
	return 0
}

// wireDType is the dtype and element size of a wire code; ok is false for an
// unknown code.
func wireDType(code uint8) (d dtypes.DType, size int, ok bool) {
	switch code {
	case wireFloat32:
		return dtypes.Float32, 4, true
	case wireFloat64:
		return dtypes.Float64, 8, true
	case wireInt32:
		return dtypes.Int32, 4, true
	}
	return dtypes.InvalidDType, 0, false
}

// wireDTypeName is d's name as Spec.DType spells it.
func wireDTypeName(d dtypes.DType) string {
	switch d {
	case dtypes.Float32:
		return "float32"
	case dtypes.Float64:
		return "float64"
	case dtypes.Int32:
		return "int32"
	}
	return d.String()
}

// checkSendable reports why tensor i of a Send cannot travel, or nil.
func checkSendable(to int, tag string, i int, t *tensors.Tensor) error {
	if t == nil {
		return fmt.Errorf("parallel: send to rank %d, tag %q: tensor %d is nil", to, tag, i)
	}
	if wireCode(t.DType()) == 0 {
		return fmt.Errorf("parallel: send to rank %d, tag %q: tensor %d: dtype %s not supported (float32, float64, int32)",
			to, tag, i, t.DType())
	}
	return nil
}

// cloneMessage copies ts into a message, for delivery within one process.
func cloneMessage(to int, tag string, ts []*tensors.Tensor) (message, error) {
	msg := message{ts: make([]*tensors.Tensor, len(ts))}
	for i, t := range ts {
		if err := checkSendable(to, tag, i, t); err != nil {
			return message{}, err
		}
		c, err := t.LocalClone()
		if err != nil {
			return message{}, fmt.Errorf("parallel: send to rank %d, tag %q: tensor %d: %w", to, tag, i, err)
		}
		msg.ts[i] = c
		msg.bytes += c.Shape().ByteSize()
	}
	return msg, nil
}
