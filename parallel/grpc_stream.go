package parallel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The streams of a GRPCTransport. The server side of a stream (serveExchange)
// reads a peer's messages into the mailbox; the client side (connect, then
// peerOut's loops) writes this rank's messages to one peer.

// exchangeService is the hand-written gRPC service: one bidirectional stream.
var exchangeService = grpc.ServiceDesc{
	ServiceName: grpcServiceName,
	HandlerType: (*exchanger)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: grpcStreamName,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(exchanger).serveExchange(stream)
		},
		ServerStreams: true,
		ClientStreams: true,
	}},
}

type exchanger interface {
	serveExchange(grpc.ServerStream) error
}

// serveExchange is the handler of a peer's stream to this rank: handshake, then
// read until the stream ends.
func (t *GRPCTransport) serveExchange(stream grpc.ServerStream) error {
	from, err := t.acceptHello(stream)
	if err != nil {
		return err
	}
	return t.readStream(stream, from)
}

// acceptHello checks the stream's first frame and answers it. A hello naming a
// rank outside the job, this rank, a rank that already has a stream, or another
// world size is refused (FailedPrecondition) and logged.
func (t *GRPCTransport) acceptHello(stream grpc.ServerStream) (int, error) {
	var f frame
	if err := stream.RecvMsg(&f); err != nil {
		return 0, err // gone before saying hello: no rank to blame
	}
	refuse := func(format string, args ...any) (int, error) {
		reason := fmt.Sprintf(format, args...)
		addr := "unknown"
		if p, ok := peer.FromContext(stream.Context()); ok {
			addr = p.Addr.String()
		}
		t.log.Warn("parallel: refused a stream", "rank", t.rank, "remote", addr, "reason", reason)
		return 0, status.Errorf(codes.FailedPrecondition, "parallel: rank %d refused the stream: %s", t.rank, reason)
	}
	switch {
	case f.decodeErr != nil:
		return refuse("malformed hello: %v", f.decodeErr)
	case f.Kind != frameHello:
		return refuse("first frame is %v, want hello", f.Kind)
	case f.From >= uint32(t.size):
		return refuse("hello from rank %d, outside [0, %d)", f.From, t.size)
	case f.Size != uint32(t.size):
		return refuse("hello from rank %d says world size %d, this job has %d", f.From, f.Size, t.size)
	case int(f.From) == t.rank:
		return refuse("hello from rank %d, which is this rank", f.From)
	}
	from := int(f.From)
	t.mu.Lock()
	if t.in[from] {
		t.mu.Unlock()
		return refuse("hello from rank %d, which already has a stream", from)
	}
	t.in[from] = true
	t.inCount++
	if t.inCount == t.size-1 {
		close(t.inReady)
	}
	t.mu.Unlock()
	if err := stream.SendMsg(&frame{Kind: frameAck, From: uint32(t.rank), Size: uint32(t.size)}); err != nil {
		t.lostIncoming(from, err)
		return 0, err
	}
	return from, nil
}

// readStream reads rank from's frames into the mailbox until the stream ends.
func (t *GRPCTransport) readStream(stream grpc.ServerStream, from int) error {
	asm := newAssembler(from, t.cfg.MaxMessageBytes)
	for {
		var f frame
		if err := stream.RecvMsg(&f); err != nil {
			if asm.bye { // the peer said goodbye: however the stream ends now is fine
				return nil
			}
			if errors.Is(err, io.EOF) && asm.cur != nil {
				err = fmt.Errorf("stream ended in the middle of message %d (tag %q)", asm.cur.seq, asm.cur.tag)
			} else if errors.Is(err, io.EOF) {
				err = errors.New("stream ended without goodbye")
			}
			t.lostIncoming(from, err)
			return err
		}
		tag, msg, err := asm.frame(&f)
		if err != nil {
			t.fail(from, err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if msg != nil {
			t.box.put(from, tag, *msg)
		}
		if asm.bye {
			t.box.depart(from)
		}
	}
}

// lostIncoming handles the end of rank from's stream without goodbye. While
// NewGRPC waits for the streams, the peer may try again; after, it is a failure.
func (t *GRPCTransport) lostIncoming(from int, err error) {
	if t.closing.Load() {
		return
	}
	t.mu.Lock()
	early := !t.established && t.inCount < t.size-1
	if early {
		t.in[from] = false
		t.inCount--
	}
	t.mu.Unlock()
	if early {
		t.log.Debug("parallel: stream broke during setup", "rank", t.rank, "peer", from, "err", err)
		return
	}
	t.fail(from, fmt.Errorf("%w: stream from rank %d: %s", ErrPeerLost, from, streamErrText(err)))
}

// streamErrText says why a stream ended, in fewer words than gRPC's status.
func streamErrText(err error) string {
	switch status.Code(err) {
	case codes.Canceled:
		return "connection lost or stream cancelled"
	case codes.Unavailable:
		return "connection lost: " + status.Convert(err).Message()
	}
	return err.Error()
}

// dialOptions are the client options for the connection to rank to; under
// TLS, refused is told when the peer refuses this rank's certificate or this
// rank refuses the peer's.
func (t *GRPCTransport) dialOptions(to int, refused func(error)) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if t.cfg.TLS != nil {
		creds = t.clientCreds(to, refused)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{})),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: t.cfg.Keepalive, Timeout: t.cfg.Keepalive, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
}

// connect opens the stream to rank to, retrying until ctx ends. A peer that
// refuses the handshake or this rank's certificate, whose certificate this
// rank refuses, or that answers as another rank or job, is not retried.
func (t *GRPCTransport) connect(ctx context.Context, to int) (*peerOut, error) {
	addr := t.cfg.Addrs[to]
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil) // the stream, once open, no longer depends on ctx
	conn, err := grpc.NewClient(addr, t.dialOptions(to, refuse)...)
	if err != nil {
		return nil, fmt.Errorf("dial rank %d at %s: %w", to, addr, err)
	}
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		p, err := t.handshake(ctx, conn, to)
		if err == nil {
			return p, nil
		}
		if ref := (*TLSRefusal)(nil); errors.As(context.Cause(ctx), &ref) {
			_ = conn.Close()
			return nil, fmt.Errorf("connect to rank %d at %s: %w", to, addr, ref)
		}
		if status.Code(err) == codes.Unauthenticated {
			t.log.Error("parallel: refused by a peer", "rank", t.rank, "peer", to, "addr", addr, "err", status.Convert(err).Message())
		}
		if c := status.Code(err); c == codes.FailedPrecondition || c == codes.Unauthenticated || errors.Is(err, ErrProtocol) {
			_ = conn.Close()
			return nil, fmt.Errorf("connect to rank %d at %s: %w", to, addr, err)
		}
		select {
		case <-ctx.Done():
			_ = conn.Close()
			return nil, fmt.Errorf("connect to rank %d at %s: %w (last error: %v)", to, addr, context.Cause(ctx), err)
		case <-time.After(delay):
		}
	}
}

// handshake opens one stream on conn, says hello and checks the answer.
func (t *GRPCTransport) handshake(ctx context.Context, conn *grpc.ClientConn, to int) (*peerOut, error) {
	sctx, cancel := context.WithCancel(t.withToken(t.ctx)) // the stream lives as long as the transport...
	stop := context.AfterFunc(ctx, cancel)                 // ...or until ctx ends, while connecting
	stream, err := conn.NewStream(sctx, &exchangeService.Streams[0], grpcMethod, grpc.WaitForReady(true))
	var ack frame
	if err == nil {
		err = stream.SendMsg(&frame{Kind: frameHello, From: uint32(t.rank), Size: uint32(t.size)})
		if err == nil || errors.Is(err, io.EOF) { // on EOF, RecvMsg has the reason
			err = stream.RecvMsg(&ack)
		}
	}
	if err == nil {
		switch {
		case ack.decodeErr != nil:
			err = protoErr("malformed handshake answer: %v", ack.decodeErr)
		case ack.Kind != frameAck || ack.From != uint32(to) || ack.Size != uint32(t.size):
			err = protoErr("rank %d at %s answered %v as rank %d of %d", to, t.cfg.Addrs[to],
				ack.Kind, ack.From, ack.Size)
		}
	}
	if err == nil && !stop() {
		err = context.Cause(ctx)
	}
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	return &peerOut{
		t:        t,
		rank:     to,
		conn:     conn,
		stream:   stream,
		cancel:   cancel,
		queue:    make(chan *outMsg),
		finished: make(chan struct{}),
		exited:   make(chan struct{}),
	}, nil
}
