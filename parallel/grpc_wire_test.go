package parallel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/parallel"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// These tests speak the wire protocol by hand, as documented in grpc_frame.go,
// to feed a real GRPCTransport what a buggy or hostile peer might send.

const exchangeMethod = "/torus.parallel.v1.Transport/Exchange"

// wf is one frame, in the documented layout.
type wf struct {
	version          uint8 // 0 means 1
	kind             uint8
	from, size       uint32
	seq, msgBytes    uint64
	nTensors, index  uint32
	dtype            uint8
	dims             []uint64
	total, offset    uint64
	tag              string
	data             []byte
	dataLenOverwrite int // if > 0, the dataLen field claims this many bytes
}

const (
	kHello, kAck, kChunk, kAbort, kGoodbye = 1, 2, 3, 4, 5
	dtF32                                  = 1
)

func (f wf) encode() []byte {
	le := binary.LittleEndian
	v := f.version
	if v == 0 {
		v = 1
	}
	b := []byte{v, f.kind}
	b = le.AppendUint32(b, f.from)
	switch f.kind {
	case kHello, kAck:
		b = le.AppendUint32(b, f.size)
	case kChunk:
		b = le.AppendUint64(b, f.seq)
		b = le.AppendUint64(b, f.msgBytes)
		b = le.AppendUint32(b, f.nTensors)
		b = le.AppendUint32(b, f.index)
		b = append(b, f.dtype, byte(len(f.dims)))
		for _, d := range f.dims {
			b = le.AppendUint64(b, d)
		}
		b = le.AppendUint64(b, f.total)
		b = le.AppendUint64(b, f.offset)
		b = le.AppendUint16(b, uint16(len(f.tag)))
		b = append(b, f.tag...)
		n := len(f.data)
		if f.dataLenOverwrite > 0 {
			n = f.dataLenOverwrite
		}
		b = le.AppendUint32(b, uint32(n))
		b = append(b, f.data...)
	case kAbort:
		b = le.AppendUint64(b, f.seq)
	}
	return b
}

// chunkF32 is a chunk of a one-tensor float32 message of the given elements.
func chunkF32(from uint32, seq uint64, elems uint64, offset uint64, data []byte) wf {
	return wf{kind: kChunk, from: from, seq: seq, msgBytes: 4 * elems, nTensors: 1, dtype: dtF32,
		dims: []uint64{elems}, total: 4 * elems, offset: offset, tag: "t", data: data}
}

// rawCodec sends and receives frames as plain bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "torus-frame-v1" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

var rawService = grpc.ServiceDesc{
	ServiceName: "torus.parallel.v1.Transport",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Exchange",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error { // rank 1's server: answer hello, then drain
			var hello []byte
			if err := stream.RecvMsg(&hello); err != nil {
				return err
			}
			if err := stream.SendMsg(wf{kind: kAck, from: 1, size: 2}.encode()); err != nil {
				return err
			}
			for {
				var b []byte
				if err := stream.RecvMsg(&b); err != nil {
					return nil
				}
			}
		},
	}},
}

// fakeJob is a 2-rank job: rank 0 a real GRPCTransport, rank 1 played by the
// test with raw frames.
type fakeJob struct {
	real   *parallel.GRPCTransport
	conn   *grpc.ClientConn
	stream grpc.ClientStream // rank 1's stream to rank 0, handshake done
	cancel context.CancelFunc
	logs   *syncBuffer
}

func startFakeJob(t *testing.T, maxMsg int64) *fakeJob {
	t.Helper()
	lis0, lis1 := listen(t), listen(t)
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}))
	srv.RegisterService(&rawService, nil)
	go func() { _ = srv.Serve(lis1) }()
	t.Cleanup(srv.Stop)

	logs := &syncBuffer{}
	cfg := parallel.GRPCConfig{Rank: 0, Addrs: []string{lis0.Addr().String(), lis1.Addr().String()},
		Listener: lis0, MaxMessageBytes: maxMsg, ConnectTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	type result struct {
		tr  *parallel.GRPCTransport
		err error
	}
	real := make(chan result, 1)
	go func() {
		tr, err := parallel.NewGRPC(context.Background(), cfg)
		real <- result{tr, err}
	}()

	fj := &fakeJob{logs: logs}
	conn, err := grpc.NewClient(lis0.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	fj.conn = conn
	fj.stream, fj.cancel = fj.open(t, wf{kind: kHello, from: 1, size: 2})
	t.Cleanup(fj.cancel)
	var ack []byte
	if err := fj.stream.RecvMsg(&ack); err != nil || !bytes.Equal(ack, wf{kind: kAck, from: 0, size: 2}.encode()) {
		t.Fatalf("handshake answer % x, %v", ack, err)
	}
	r := <-real
	if r.err != nil {
		t.Fatal(r.err)
	}
	fj.real = r.tr
	t.Cleanup(func() { _ = r.tr.Close() })
	return fj
}

// open opens a new stream to rank 0 and sends its first frame.
func (fj *fakeJob) open(t *testing.T, first wf) (grpc.ClientStream, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := fj.conn.NewStream(ctx, &rawService.Streams[0], exchangeMethod, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(first.encode()); err != nil {
		t.Fatal(err)
	}
	return stream, cancel
}

// send writes frames on rank 1's stream; a send failing because rank 0 has
// already rejected the stream is fine.
func (fj *fakeJob) send(t *testing.T, frames ...[]byte) {
	t.Helper()
	for _, b := range frames {
		if err := fj.stream.SendMsg(b); err != nil {
			return
		}
	}
}

// wantPeerError checks that rank 0's Recv from rank 1, and a later Send to it,
// fail with a PeerError naming rank 1 and wrapping sentinel.
func (fj *fakeJob) wantPeerError(t *testing.T, sentinel error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := fj.real.Recv(ctx, 1, "t")
	var pe *parallel.PeerError
	if !errors.As(err, &pe) || pe.Rank != 1 || !errors.Is(err, sentinel) {
		t.Fatalf("Recv: got %v, want a PeerError naming rank 1 wrapping %v", err, sentinel)
	}
	if err := fj.real.Send(ctx, 1, "t", scalarI32(1)); !errors.As(err, &pe) || pe.Rank != 1 {
		t.Fatalf("Send after the failure: got %v, want the PeerError", err)
	}
	t.Logf("%v", err)
}

func f32Bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// TestGRPCWireValidMessage checks the hand encoder against the transport: a
// message cut into three chunks arrives whole.
func TestGRPCWireValidMessage(t *testing.T) {
	fj := startFakeJob(t, 0)
	data := f32Bytes(1, 2, 3, 4, 5)
	fj.send(t, chunkF32(1, 0, 5, 0, data[:8]).encode(), chunkF32(1, 0, 5, 8, data[8:12]).encode(),
		chunkF32(1, 0, 5, 12, data[12:]).encode())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := fj.real.Recv(ctx, 1, "t", parallel.Spec{DType: "float32", Shape: []int{5}})
	if err != nil {
		t.Fatal(err)
	}
	if v := tensors.MustCopyFlatData[float32](got[0]); v[0] != 1 || v[4] != 5 {
		t.Fatalf("got %v", v)
	}
}

func TestGRPCWireMalformed(t *testing.T) {
	four := f32Bytes(1, 2, 3, 4)
	valid := chunkF32(1, 0, 4, 0, four)
	truncated := valid.encode()
	truncated = truncated[:len(truncated)-3]
	for _, c := range []struct {
		name   string
		frames []wf
		raw    []byte // sent after frames
		maxMsg int64
	}{
		{name: "shape does not match byte count", frames: []wf{{kind: kChunk, from: 1, msgBytes: 20, nTensors: 1,
			dtype: dtF32, dims: []uint64{2, 3}, total: 20, tag: "t", data: make([]byte, 20)}}},
		{name: "unknown dtype", frames: []wf{{kind: kChunk, from: 1, msgBytes: 16, nTensors: 1,
			dtype: 9, dims: []uint64{4}, total: 16, tag: "t", data: four}}},
		{name: "dims overflow", frames: []wf{{kind: kChunk, from: 1, msgBytes: 16, nTensors: 1,
			dtype: dtF32, dims: []uint64{1 << 40, 1 << 40}, total: 16, tag: "t", data: four}}},
		{name: "chunk longer than its tensor", frames: []wf{chunkF32(1, 0, 4, 0, append(four, 0, 0, 0, 0))}},
		{name: "empty chunk", frames: []wf{chunkF32(1, 0, 4, 0, nil)}},
		{name: "chunk out of order", frames: []wf{chunkF32(1, 0, 4, 0, four[:4]), chunkF32(1, 0, 4, 8, four[8:])}},
		{name: "next message before this one ends",
			frames: []wf{chunkF32(1, 0, 4, 0, four[:8]), chunkF32(1, 1, 4, 0, four)}},
		{name: "wrong sequence number", frames: []wf{chunkF32(1, 5, 4, 0, four)}},
		{name: "frame from another rank", frames: []wf{chunkF32(0, 0, 4, 0, four)}},
		{name: "frame from unknown rank", frames: []wf{chunkF32(7, 0, 4, 0, four)}},
		{name: "tensor larger than its message", frames: []wf{{kind: kChunk, from: 1, msgBytes: 8, nTensors: 1,
			dtype: dtF32, dims: []uint64{4}, total: 16, tag: "t", data: four}}},
		{name: "message over MaxMessageBytes", maxMsg: 1 << 20, frames: []wf{{kind: kChunk, from: 1,
			msgBytes: 1 << 40, nTensors: 1, dtype: dtF32, dims: []uint64{1 << 38}, total: 1 << 40, tag: "t",
			data: four}}},
		{name: "truncated frame", raw: truncated},
		{name: "dataLen beyond the frame", frames: []wf{{kind: kChunk, from: 1, msgBytes: 16, nTensors: 1,
			dtype: dtF32, dims: []uint64{4}, total: 16, tag: "t", data: four, dataLenOverwrite: 1 << 30}}},
		{name: "trailing bytes", raw: append(valid.encode(), 0)},
		{name: "empty frame", raw: []byte{}},
		{name: "unknown frame kind", frames: []wf{{kind: 42, from: 1}}},
		{name: "unknown version", frames: []wf{{version: 9, kind: kGoodbye, from: 1}}},
		{name: "second hello", frames: []wf{{kind: kHello, from: 1, size: 2}}},
		{name: "abort of no message", frames: []wf{{kind: kAbort, from: 1, seq: 0}}},
		{name: "goodbye in the middle of a message",
			frames: []wf{chunkF32(1, 0, 4, 0, four[:8]), {kind: kGoodbye, from: 1}}},
		{name: "frame after goodbye", frames: []wf{{kind: kGoodbye, from: 1}, valid}},
		{name: "empty message with content", frames: []wf{{kind: kChunk, from: 1, tag: "t", data: four}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fj := startFakeJob(t, c.maxMsg)
			for _, f := range c.frames {
				fj.send(t, f.encode())
			}
			if c.raw != nil {
				fj.send(t, c.raw)
			}
			// Rank 0 rejects the stream, then (with the failure already in place)
			// its calls fail.
			var rest []byte
			if err := fj.stream.RecvMsg(&rest); status.Code(err) != codes.InvalidArgument {
				t.Errorf("rank 1's stream ended with %v, want InvalidArgument", err)
			}
			fj.wantPeerError(t, parallel.ErrProtocol)
			if !strings.Contains(fj.logs.String(), "level=ERROR") {
				t.Errorf("the failure was not logged: %s", fj.logs.String())
			}
		})
	}
}

// TestGRPCWireStreamEnds: a stream that ends in the middle of a message, or
// without goodbye, is a lost peer.
func TestGRPCWireStreamEnds(t *testing.T) {
	half := chunkF32(1, 0, 4, 0, f32Bytes(1, 2)).encode()
	for name, end := range map[string]func(fj *fakeJob){
		"closed mid-message":     func(fj *fakeJob) { fj.send(t, half); _ = fj.stream.CloseSend() },
		"reset mid-message":      func(fj *fakeJob) { fj.send(t, half); fj.cancel() },
		"closed without goodbye": func(fj *fakeJob) { _ = fj.stream.CloseSend() },
	} {
		t.Run(name, func(t *testing.T) {
			fj := startFakeJob(t, 0)
			end(fj)
			fj.wantPeerError(t, parallel.ErrPeerLost)
		})
	}
}

// TestGRPCWireNoUpFrontAllocation: a tensor announced at 3 GiB whose bytes
// never come is not allocated.
func TestGRPCWireNoUpFrontAllocation(t *testing.T) {
	fj := startFakeJob(t, 0)
	const elems = 3 << 28 // 3 GiB of float32
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	chunk := make([]byte, 1<<20)
	for i := range 4 {
		fj.send(t, chunkF32(1, 0, elems, uint64(i)<<20, chunk).encode())
	}
	_ = fj.stream.CloseSend()
	fj.wantPeerError(t, parallel.ErrPeerLost)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
		t.Fatalf("receiving 4 MiB of an announced 3 GiB tensor allocated %d MiB", grew>>20)
	}
}

// TestGRPCWireHandshakeRefused: a stream whose hello names a rank outside the
// job, this rank, a rank already connected, or another world size is refused
// with an error naming what is wrong, logged, and the job goes on.
func TestGRPCWireHandshakeRefused(t *testing.T) {
	fj := startFakeJob(t, 0)
	for _, c := range []struct {
		hello wf
		want  string
	}{
		{wf{kind: kHello, from: 7, size: 2}, "rank 7, outside [0, 2)"},
		{wf{kind: kHello, from: 1, size: 3}, "world size 3"},
		{wf{kind: kHello, from: 1, size: 2}, "rank 1, which already has a stream"},
		{wf{kind: kHello, from: 0, size: 2}, "rank 0, which is this rank"},
		{chunkF32(1, 0, 1, 0, f32Bytes(1)), "want hello"},
		{wf{version: 2, kind: kHello, from: 1, size: 2}, "malformed hello"},
	} {
		stream, cancel := fj.open(t, c.hello)
		var ack []byte
		err := stream.RecvMsg(&ack)
		cancel()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), c.want) {
			t.Errorf("hello %+v: got %v, want FailedPrecondition saying %q", c.hello, err, c.want)
		}
		if !strings.Contains(fj.logs.String(), c.want) {
			t.Errorf("hello %+v: refusal not logged", c.hello)
		}
	}
	// The job is unharmed.
	fj.send(t, chunkF32(1, 0, 1, 0, f32Bytes(7)).encode())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := fj.real.Recv(ctx, 1, "t"); err != nil {
		t.Fatalf("after refused handshakes: %v", err)
	}
}
