package parallel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// The gRPC transport's wire protocol.
//
// Service: one bidirectional streaming method, /torus.parallel.v1.Transport/Exchange,
// defined by hand (no .proto). For every ordered pair of ranks (a, b), a dials b
// and opens one Exchange stream that carries a's messages to b; b sends on it
// only the handshake reply. Messages use the codec named "torus-frame-v1": each
// gRPC message is one frame, encoded as below (all integers little-endian).
//
//	header, every frame:
//	  u8  version   1
//	  u8  kind      1 hello, 2 ack, 3 chunk, 4 abort, 5 goodbye
//	  u32 from      the sending rank
//	hello, ack (first frame each way on a stream):
//	  u32 size      the sender's world size
//	chunk (one piece of one tensor of one message):
//	  u64 seq       message number on this stream, 0, 1, 2, ...
//	  u64 msgBytes  payload bytes of the whole message (all its tensors)
//	  u32 nTensors  tensors in the message (0: an empty message, one chunk with no tensor)
//	  u32 index     which tensor this chunk belongs to, 0 .. nTensors-1
//	  u8  dtype     1 float32, 2 float64, 3 int32 (0 only in an empty message)
//	  u8  ndims
//	  u64 × ndims   dimensions
//	  u64 total     bytes of this tensor (= elements × dtype size)
//	  u64 offset    where this chunk's data goes in the tensor
//	  u16 tagLen, then tagLen bytes of tag
//	  u32 dataLen, then dataLen bytes of data
//	abort (the sender gave up on message seq after sending part of it):
//	  u64 seq
//	goodbye (the sender closed its transport; the stream ends next):
//	  nothing more
//
// A message is sent as its tensors in order, each as chunks in order of offset
// (one chunk with dataLen 0 for a tensor of 0 bytes); chunks of different
// messages never interleave on a stream. The receiver checks every field
// against the handshake and the chunks before it (see assembler).
const (
	grpcServiceName = "torus.parallel.v1.Transport"
	grpcStreamName  = "Exchange"
	grpcMethod      = "/" + grpcServiceName + "/" + grpcStreamName
	frameCodecName  = "torus-frame-v1"
	frameVersion    = 1

	maxTagLen     = math.MaxUint16
	maxDims       = math.MaxUint8
	maxChunkBytes = 16 << 20
	// maxFrameBytes bounds one encoded frame: a chunk's data and the largest header.
	maxFrameBytes = maxChunkBytes + 64<<10 + 8*maxDims + 64
)

type frameKind uint8

const (
	frameHello   frameKind = 1
	frameAck     frameKind = 2
	frameChunk   frameKind = 3
	frameAbort   frameKind = 4
	frameGoodbye frameKind = 5
)

func (k frameKind) String() string {
	switch k {
	case frameHello:
		return "hello"
	case frameAck:
		return "ack"
	case frameChunk:
		return "chunk"
	case frameAbort:
		return "abort"
	case frameGoodbye:
		return "goodbye"
	}
	return fmt.Sprintf("frame kind %d", uint8(k))
}

// frame is one decoded gRPC message of the Exchange stream. Fields not used by
// Kind are zero.
type frame struct {
	Kind frameKind
	From uint32
	Size uint32 // hello, ack

	Seq        uint64 // chunk, abort
	MsgBytes   uint64
	NumTensors uint32
	Index      uint32
	DType      uint8
	Dims       []uint64
	Total      uint64
	Offset     uint64
	Tag        string
	Data       []byte

	// decodeErr is set by the codec instead of failing Unmarshal: gRPC would
	// turn a codec error into an opaque status, and the reader must report it
	// as an ErrProtocol naming the peer.
	decodeErr error
}

// frameCodec is the encoding.CodecV2 for frames.
type frameCodec struct{}

func init() { encoding.RegisterCodecV2(frameCodec{}) }

func (frameCodec) Name() string { return frameCodecName }

// Marshal encodes a *frame. A chunk's data is not copied: the sender keeps it
// unchanged until gRPC is done with it.
func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("parallel: frame codec cannot marshal %T", v)
	}
	hdr := f.appendHeader(make([]byte, 0, 64+len(f.Tag)+8*len(f.Dims)))
	if len(f.Data) == 0 {
		return mem.BufferSlice{mem.SliceBuffer(hdr)}, nil
	}
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.SliceBuffer(f.Data)}, nil
}

// Unmarshal decodes into a *frame. It fails only for a wrong v: a malformed
// frame is reported in frame.decodeErr.
func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("parallel: frame codec cannot unmarshal into %T", v)
	}
	*f = frame{}
	if err := f.decode(data.Materialize()); err != nil {
		*f = frame{decodeErr: err}
	}
	return nil
}

// appendHeader appends everything of f but a chunk's data bytes.
func (f *frame) appendHeader(b []byte) []byte {
	le := binary.LittleEndian
	b = append(b, frameVersion, byte(f.Kind))
	b = le.AppendUint32(b, f.From)
	switch f.Kind {
	case frameHello, frameAck:
		b = le.AppendUint32(b, f.Size)
	case frameChunk:
		b = le.AppendUint64(b, f.Seq)
		b = le.AppendUint64(b, f.MsgBytes)
		b = le.AppendUint32(b, f.NumTensors)
		b = le.AppendUint32(b, f.Index)
		b = append(b, f.DType, byte(len(f.Dims)))
		for _, d := range f.Dims {
			b = le.AppendUint64(b, d)
		}
		b = le.AppendUint64(b, f.Total)
		b = le.AppendUint64(b, f.Offset)
		b = le.AppendUint16(b, uint16(len(f.Tag)))
		b = append(b, f.Tag...)
		b = le.AppendUint32(b, uint32(len(f.Data)))
	case frameAbort:
		b = le.AppendUint64(b, f.Seq)
	}
	return b
}

var errShortFrame = errors.New("frame truncated")

// frameReader reads fixed-size fields, remembering the first shortfall.
type frameReader struct {
	b   []byte
	err error
}

func (r *frameReader) take(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errShortFrame
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *frameReader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *frameReader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *frameReader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *frameReader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// decode parses b into f. f.Data aliases b.
func (f *frame) decode(b []byte) error {
	r := &frameReader{b: b}
	if v := r.u8(); r.err == nil && v != frameVersion {
		return fmt.Errorf("frame version %d, want %d", v, frameVersion)
	}
	f.Kind = frameKind(r.u8())
	f.From = r.u32()
	if r.err != nil {
		return r.err
	}
	switch f.Kind {
	case frameHello, frameAck:
		f.Size = r.u32()
	case frameChunk:
		f.Seq = r.u64()
		f.MsgBytes = r.u64()
		f.NumTensors = r.u32()
		f.Index = r.u32()
		f.DType = r.u8()
		ndims := int(r.u8())
		if r.err == nil && ndims > 0 {
			f.Dims = make([]uint64, ndims) // at most 255
			for i := range f.Dims {
				f.Dims[i] = r.u64()
			}
		}
		f.Total = r.u64()
		f.Offset = r.u64()
		f.Tag = string(r.take(int(r.u16())))
		f.Data = r.take(int(r.u32()))
	case frameAbort:
		f.Seq = r.u64()
	case frameGoodbye:
	default:
		return fmt.Errorf("unknown %v", f.Kind)
	}
	if r.err != nil {
		return fmt.Errorf("%v: %w", f.Kind, r.err)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%v: %d bytes after its end", f.Kind, len(r.b))
	}
	return nil
}

// tensorBytes is the byte size of a tensor of the given wire dtype and dims,
// checked for overflow; ok is false for an unknown dtype or an overflow.
func tensorBytes(code uint8, dims []uint64) (n uint64, ok bool) {
	_, size, known := wireDType(code)
	if !known {
		return 0, false
	}
	n = uint64(size)
	for _, d := range dims {
		if d > math.MaxInt32*uint64(math.MaxInt32) { // no axis this long fits any memory
			return 0, false
		}
		hi, lo := bits.Mul64(n, d)
		if hi != 0 {
			return 0, false
		}
		n = lo
	}
	return n, n <= math.MaxInt
}
