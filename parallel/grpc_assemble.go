package parallel

import (
	"fmt"
	"slices"

	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
)

// assembler rebuilds the messages of one incoming stream from its chunk frames
// and checks each frame against the handshake and the frames before it. Any
// mismatch is an error wrapping ErrProtocol; nothing in a frame can make it
// panic or allocate much more than the bytes that have arrived: a tensor's
// memory is staged in a buffer that grows with the data until half of it has
// come, and only then allocated at its announced size.
//
// It is used by one goroutine, the stream's reader.
type assembler struct {
	from    uint32 // the rank the stream's handshake named
	maxMsg  uint64 // MaxMessageBytes
	nextSeq uint64 // seq of the next message to start
	cur     *partialMsg
	bye     bool // a goodbye frame arrived: the stream must end now
}

// partialMsg is a message whose chunks are arriving.
type partialMsg struct {
	seq        uint64
	tag        string
	msgBytes   uint64
	numTensors uint32
	ts         []*tensors.Tensor // complete tensors
	done       uint64            // their bytes
	t          *partialTensor    // the tensor being filled, or nil between tensors
}

// partialTensor is a tensor whose chunks are arriving.
type partialTensor struct {
	dtype  uint8
	dims   []uint64
	total  uint64
	got    uint64
	staged []byte          // the bytes so far, while got < total/2
	t      *tensors.Tensor // allocated once got >= total/2
}

func newAssembler(from int, maxMsg int64) *assembler {
	return &assembler{from: uint32(from), maxMsg: uint64(maxMsg)}
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// frame takes one frame. It returns a message when f completed one.
func (a *assembler) frame(f *frame) (tag string, msg *message, err error) {
	if f.decodeErr != nil {
		return "", nil, protoErr("malformed frame: %v", f.decodeErr)
	}
	if f.From != a.from {
		return "", nil, protoErr("%v frame claims sender rank %d on rank %d's stream", f.Kind, f.From, a.from)
	}
	if a.bye {
		return "", nil, protoErr("%v frame after goodbye", f.Kind)
	}
	switch f.Kind {
	case frameChunk:
		return a.chunk(f)
	case frameAbort:
		if a.cur == nil || f.Seq != a.cur.seq {
			return "", nil, protoErr("abort of message %d, which is not in progress", f.Seq)
		}
		a.cur = nil
		a.nextSeq++
		return "", nil, nil
	case frameGoodbye:
		if a.cur != nil {
			return "", nil, protoErr("goodbye in the middle of message %d (tag %q)", a.cur.seq, a.cur.tag)
		}
		a.bye = true
		return "", nil, nil
	}
	return "", nil, protoErr("unexpected %v frame", f.Kind)
}

func (a *assembler) chunk(f *frame) (string, *message, error) {
	m := a.cur
	if m == nil {
		if f.Seq != a.nextSeq {
			return "", nil, protoErr("chunk of message %d, want message %d", f.Seq, a.nextSeq)
		}
		if f.MsgBytes > a.maxMsg {
			return "", nil, protoErr("message %d (tag %q) of %d bytes is larger than MaxMessageBytes %d",
				f.Seq, f.Tag, f.MsgBytes, a.maxMsg)
		}
		m = &partialMsg{seq: f.Seq, tag: f.Tag, msgBytes: f.MsgBytes, numTensors: f.NumTensors}
	} else if f.Seq != m.seq || f.Tag != m.tag || f.MsgBytes != m.msgBytes || f.NumTensors != m.numTensors {
		return "", nil, protoErr("chunk (message %d, tag %q, %d bytes, %d tensors) while message %d "+
			"(tag %q, %d bytes, %d tensors) is incomplete",
			f.Seq, f.Tag, f.MsgBytes, f.NumTensors, m.seq, m.tag, m.msgBytes, m.numTensors)
	}
	a.cur = m

	if m.numTensors == 0 { // an empty message is exactly one empty chunk
		if f.Index != 0 || f.DType != 0 || len(f.Dims) != 0 || f.Total != 0 || f.Offset != 0 ||
			len(f.Data) != 0 || f.MsgBytes != 0 {
			return "", nil, protoErr("message %d (tag %q) has no tensors but its chunk has content", m.seq, m.tag)
		}
		return a.finish()
	}

	p := m.t
	if p == nil {
		if f.Index != uint32(len(m.ts)) || f.Offset != 0 {
			return "", nil, protoErr("message %d: chunk of tensor %d at offset %d, want tensor %d at offset 0",
				m.seq, f.Index, f.Offset, len(m.ts))
		}
		if _, _, known := wireDType(f.DType); !known {
			return "", nil, protoErr("message %d tensor %d: unknown dtype code %d", m.seq, f.Index, f.DType)
		}
		n, ok := tensorBytes(f.DType, f.Dims)
		if !ok {
			return "", nil, protoErr("message %d tensor %d: shape %v is too large", m.seq, f.Index, f.Dims)
		}
		if n != f.Total {
			return "", nil, protoErr("message %d tensor %d: %s%v holds %d bytes, chunk says %d",
				m.seq, f.Index, wireCodeName(f.DType), f.Dims, n, f.Total)
		}
		if f.Total > m.msgBytes-m.done {
			return "", nil, protoErr("message %d tensor %d: %d bytes overrun the message's %d bytes",
				m.seq, f.Index, f.Total, m.msgBytes)
		}
		p = &partialTensor{dtype: f.DType, dims: slices.Clone(f.Dims), total: f.Total}
		m.t = p
	} else if f.Index != uint32(len(m.ts)) || f.DType != p.dtype || !slices.Equal(f.Dims, p.dims) ||
		f.Total != p.total || f.Offset != p.got {
		return "", nil, protoErr("message %d: chunk of tensor %d (%s%v, offset %d) "+
			"does not continue tensor %d (%s%v, %d of %d bytes)", m.seq, f.Index, wireCodeName(f.DType), f.Dims,
			f.Offset, len(m.ts), wireCodeName(p.dtype), p.dims, p.got, p.total)
	}

	n := uint64(len(f.Data))
	if n > p.total-p.got || (n == 0 && p.total != 0) {
		return "", nil, protoErr("message %d tensor %d: chunk of %d bytes at offset %d, tensor has %d",
			m.seq, f.Index, n, f.Offset, p.total)
	}
	if err := p.write(f.Data); err != nil {
		return "", nil, err
	}
	if p.got < p.total {
		return "", nil, nil
	}
	m.ts = append(m.ts, p.tensor())
	m.done += p.total
	m.t = nil
	if uint32(len(m.ts)) < m.numTensors {
		return "", nil, nil
	}
	if m.done != m.msgBytes {
		return "", nil, protoErr("message %d: tensors hold %d bytes, message says %d", m.seq, m.done, m.msgBytes)
	}
	return a.finish()
}

// finish hands over the current message, which is complete.
func (a *assembler) finish() (string, *message, error) {
	m := a.cur
	a.cur = nil
	a.nextSeq++
	return m.tag, &message{ts: m.ts, bytes: int64(m.done)}, nil
}

// write appends data to the tensor.
func (p *partialTensor) write(data []byte) error {
	n := uint64(len(data))
	if p.t == nil && 2*(p.got+n) >= p.total {
		dt, _, _ := wireDType(p.dtype)
		dims := make([]int, len(p.dims))
		for i, d := range p.dims {
			dims[i] = int(d) // fits: tensorBytes checked the shape
		}
		p.t = tensors.FromShape(shapes.Make(dt, dims...))
		if len(p.staged) > 0 {
			if err := p.t.MutableBytes(func(b []byte) { copy(b, p.staged) }); err != nil {
				return err
			}
		}
		p.staged = nil
	}
	if n == 0 {
		return nil
	}
	if p.t == nil {
		p.staged = append(p.staged, data...)
	} else if err := p.t.MutableBytes(func(b []byte) { copy(b[p.got:], data) }); err != nil {
		return err
	}
	p.got += n
	return nil
}

// wireCodeName names a wire dtype code for error messages.
func wireCodeName(code uint8) string {
	if d, _, ok := wireDType(code); ok {
		return wireDTypeName(d)
	}
	return fmt.Sprintf("dtype(%d)", code)
}

func (p *partialTensor) tensor() *tensors.Tensor { return p.t }
