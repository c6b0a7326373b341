package parallel

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/gomlx/gomlx/core/tensors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// peerOut is this rank's stream to one peer. Its write loop is the only
// goroutine that sends on the stream, one message at a time; its read loop
// waits for the stream's end, to notice a broken peer even while nothing is
// being sent.
type peerOut struct {
	t      *GRPCTransport
	rank   int
	conn   *grpc.ClientConn
	stream grpc.ClientStream
	cancel context.CancelFunc // ends the stream

	queue    chan *outMsg  // Send hands a message to the write loop
	finished chan struct{} // closed when the read loop returns: the stream has ended
	exited   chan struct{} // closed when the write loop returns; exitErr says why
	exitErr  error

	nextSeq uint64 // write loop only
	dead    bool   // write loop only: the stream is broken
}

// outMsg is a message on its way: the tensors' data already copied.
type outMsg struct {
	ctx   context.Context
	tag   string
	ts    []wireTensor
	bytes uint64
	done  chan error // the write loop's result; buffered
}

type wireTensor struct {
	dtype uint8
	dims  []uint64
	data  []byte
}

// newOutMsg copies ts for sending to rank to.
func newOutMsg(ctx context.Context, to int, tag string, ts []*tensors.Tensor) (*outMsg, error) {
	m := &outMsg{ctx: ctx, tag: tag, ts: make([]wireTensor, len(ts)), done: make(chan error, 1)}
	for i, t := range ts {
		if err := checkSendable(to, tag, i, t); err != nil {
			return nil, err
		}
		if t.Rank() > maxDims {
			return nil, fmt.Errorf("parallel: send to rank %d, tag %q: tensor %d has %d axes, at most %d",
				to, tag, i, t.Rank(), maxDims)
		}
		wt := wireTensor{dtype: wireCode(t.DType()), dims: make([]uint64, t.Rank())}
		for a, d := range t.Shape().Dimensions {
			wt.dims[a] = uint64(d)
		}
		if n := t.Shape().ByteSize(); n > 0 {
			wt.data = make([]byte, n)
			if err := t.ConstBytes(func(b []byte) { copy(wt.data, b) }); err != nil {
				return nil, fmt.Errorf("parallel: send to rank %d, tag %q: tensor %d: %w", to, tag, i, err)
			}
		}
		m.ts[i] = wt
		m.bytes += uint64(len(wt.data))
	}
	return m, nil
}

// send hands m to the write loop and waits for its result.
func (p *peerOut) send(m *outMsg) error {
	select {
	case p.queue <- m:
	case <-m.ctx.Done():
		return m.ctx.Err()
	case <-p.t.done:
		return p.t.box.failure()
	case <-p.exited:
		return p.exitErr
	}
	select {
	case err := <-m.done:
		return err
	case <-m.ctx.Done():
		return m.ctx.Err() // the write loop aborts m at its next chunk
	case <-p.t.done:
		return p.t.box.failure()
	}
}

// writeLoop sends the messages handed to it until the transport closes (then
// it says goodbye) or fails, or the stream breaks.
func (p *peerOut) writeLoop() {
	defer close(p.exited)
	for {
		select {
		case m := <-p.queue:
			err := p.write(m)
			m.done <- err
			if p.dead {
				p.exitErr = err
				return
			}
		case <-p.t.done:
			p.exitErr = p.t.box.failure()
			if p.t.clean.Load() {
				_ = p.stream.SendMsg(&frame{Kind: frameGoodbye, From: uint32(p.t.rank)})
				_ = p.stream.CloseSend()
			}
			return
		}
	}
}

// write sends m as chunk frames. If m's ctx ends or the transport closes after
// a part of m went out, the rest is replaced by an abort frame.
func (p *peerOut) write(m *outMsg) error {
	t := p.t
	f := frame{Kind: frameChunk, From: uint32(t.rank), Seq: p.nextSeq, MsgBytes: m.bytes,
		NumTensors: uint32(len(m.ts)), Tag: m.tag}
	started := false
	stopped := func() error {
		if err := m.ctx.Err(); err != nil {
			return err
		}
		select {
		case <-t.done:
			return t.box.failure()
		default:
			return nil
		}
	}
	sendChunk := func() error {
		if err := stopped(); err != nil {
			if started {
				p.nextSeq++
				if serr := p.stream.SendMsg(&frame{Kind: frameAbort, From: f.From, Seq: f.Seq}); serr != nil {
					return p.broke(serr)
				}
			}
			return err
		}
		if err := p.stream.SendMsg(&f); err != nil {
			return p.broke(err)
		}
		started = true
		t.bytesSent.Add(int64(len(f.Data)))
		return nil
	}
	if len(m.ts) == 0 {
		if err := sendChunk(); err != nil {
			return err
		}
	}
	chunk := t.cfg.ChunkBytes
	for i, wt := range m.ts {
		f.Index, f.DType, f.Dims, f.Total = uint32(i), wt.dtype, wt.dims, uint64(len(wt.data))
		for off := 0; ; off += chunk {
			end := min(off+chunk, len(wt.data))
			f.Offset, f.Data = uint64(off), wt.data[off:end]
			if err := sendChunk(); err != nil {
				return err
			}
			if end == len(wt.data) {
				break
			}
		}
	}
	p.nextSeq++
	return nil
}

// broke handles a failed SendMsg: the stream is unusable. It returns the error
// for the Send that was writing.
func (p *peerOut) broke(err error) error {
	p.dead = true
	t := p.t
	if errors.Is(err, io.EOF) {
		// The peer ended the stream; the read loop has its status (e.g. the
		// peer rejected a frame), which makes the better report.
		select {
		case <-p.finished:
		case <-t.ctx.Done():
		}
	}
	if t.box.departed(p.rank) {
		return errDeparted(p.rank)
	}
	t.fail(p.rank, fmt.Errorf("%w: stream to rank %d: %s", ErrPeerLost, p.rank, streamErrText(err)))
	return t.box.failure()
}

// readLoop waits for the end of the stream. The peer never sends after its
// handshake answer, so any end that is not this rank's Close, or after the
// peer's goodbye, is a failure.
func (p *peerOut) readLoop() {
	defer close(p.finished)
	var f frame
	err := p.stream.RecvMsg(&f)
	t := p.t
	switch {
	case err == nil:
		t.fail(p.rank, protoErr("rank %d sent a %v frame on this rank's stream to it", p.rank, f.Kind))
	case t.closing.Load() || t.box.departed(p.rank):
	case status.Code(err) == codes.InvalidArgument:
		t.fail(p.rank, protoErr("rank %d rejected this rank's stream: %s", p.rank, status.Convert(err).Message()))
	default:
		t.fail(p.rank, fmt.Errorf("%w: stream to rank %d: %s", ErrPeerLost, p.rank, streamErrText(err)))
	}
}
