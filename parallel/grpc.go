package parallel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// GRPCConfig configures one rank's GRPCTransport. Zero fields take the defaults
// written beside them.
type GRPCConfig struct {
	Rank     int          // this rank, in [0, len(Addrs))
	Addrs    []string     // every rank's address, host:port; len(Addrs) is the world size
	Listener net.Listener // this rank's, already listening; the transport serves on it and closes it

	ChunkBytes      int           // bytes of tensor data per frame; default 1 MiB, at most 16 MiB
	MaxMessageBytes int64         // a message announced larger is refused (ErrProtocol); default 4 GiB
	ConnectTimeout  time.Duration // how long NewGRPC waits for every peer; default 60 s
	Keepalive       time.Duration // a peer silent this long is pinged, and lost if silent as long again; default 5 s, at least 1 s
	CloseTimeout    time.Duration // how long Close waits for peers to take its goodbye; default 5 s
	Logger          *slog.Logger  // default slog.Default()
	// Token, when set, is the cluster token every stream to and from this
	// rank carries; a stream without it is refused and logged (grpc_auth.go).
	// Under TLS it travels encrypted, a second check after the certificates.
	Token string
	// TLS, when set, makes every connection to and from this rank mutual TLS
	// 1.3 against the job's CA (tls.go: DeriveTLS, LoadTLS); a peer without a
	// certificate of the job is refused and logged. Nil: plaintext, which
	// Validate allows only when every address is loopback.
	TLS *TLSIdentity
}

// withDefaults fills the zero fields.
func (c GRPCConfig) withDefaults() GRPCConfig {
	if c.ChunkBytes == 0 {
		c.ChunkBytes = 1 << 20
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 4 << 30
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 60 * time.Second
	}
	if c.Keepalive == 0 {
		c.Keepalive = 5 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every field that is out of range, naming it.
func (c GRPCConfig) Validate() error {
	var errs []error
	if c.Rank < 0 || c.Rank >= len(c.Addrs) {
		errs = append(errs, fmt.Errorf("Rank %d out of range [0, len(Addrs)=%d)", c.Rank, len(c.Addrs)))
	}
	for i, a := range c.Addrs {
		switch {
		case a == "":
			errs = append(errs, fmt.Errorf("Addrs[%d] is empty", i))
		case c.TLS == nil && !IsLoopback(a):
			errs = append(errs, fmt.Errorf("Addrs[%d] %q is not a loopback address, and TLS is nil: plaintext streams are allowed on loopback only", i, a))
		}
	}
	if c.TLS != nil && (len(c.TLS.Cert.Certificate) == 0 || c.TLS.Cert.PrivateKey == nil || c.TLS.CAs == nil) {
		errs = append(errs, errors.New("TLS has no certificate, no key or no CAs (make it with DeriveTLS or LoadTLS)"))
	}
	if c.Listener == nil {
		errs = append(errs, errors.New("Listener is nil"))
	}
	if c.ChunkBytes < 0 || c.ChunkBytes > maxChunkBytes {
		errs = append(errs, fmt.Errorf("ChunkBytes %d out of range [1, %d]", c.ChunkBytes, maxChunkBytes))
	}
	if c.MaxMessageBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxMessageBytes %d is negative", c.MaxMessageBytes))
	}
	for name, d := range map[string]time.Duration{"ConnectTimeout": c.ConnectTimeout,
		"Keepalive": c.Keepalive, "CloseTimeout": c.CloseTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("parallel: GRPCConfig: %w", err)
	}
	return nil
}

// GRPCTransport is the Transport between processes: every rank serves one
// gRPC server and opens one bidirectional stream to each peer for the messages
// it sends that peer (wire format in grpc_frame.go). Messages are cut into
// chunks; gRPC's flow control makes Send wait while a peer falls behind, but
// each incoming stream is read without pause into a mailbox, so two ranks that
// send to each other before receiving (every ring step) cannot deadlock.
//
// When a stream to or from a peer breaks, or a peer sends a malformed frame,
// the transport fails: every pending and later call returns a *PeerError naming
// the first such peer. A peer's Close is not a failure: the peer says goodbye,
// and only exchanges with it fail (Recv once its earlier messages are taken).
//
// All methods are safe for concurrent use.
type GRPCTransport struct {
	cfg        GRPCConfig
	rank, size int
	log        *slog.Logger
	box        *mailbox
	server     *grpc.Server

	ctx    context.Context // the streams' lifetime; cancelled last thing in Close
	cancel context.CancelFunc

	out       []*peerOut // out[r]: the stream to rank r; nil for this rank
	bytesSent atomic.Int64

	done      chan struct{} // closed on failure or Close
	doneOnce  sync.Once
	closing   atomic.Bool // Close was called
	clean     atomic.Bool // Close was called before any failure: say goodbye
	closeOnce sync.Once
	wg        sync.WaitGroup // every goroutine the transport started

	mu          sync.Mutex
	in          []bool        // in[r]: rank r's stream to us has said hello
	inCount     int           // how many in[r] are true
	inReady     chan struct{} // closed when every peer's stream said hello
	established bool          // NewGRPC returned it
}

var _ Transport = (*GRPCTransport)(nil)

// NewGRPC starts rank cfg.Rank of a job: it serves on cfg.Listener, dials every
// other rank (retrying until ConnectTimeout, so ranks may start in any order),
// and returns once a stream to and a stream from every peer have completed
// their handshake. Cancelling ctx abandons the attempt; it does not affect the
// transport once returned. The transport owns cfg.Listener: Close closes it, and
// so does NewGRPC when it fails.
func NewGRPC(ctx context.Context, cfg GRPCConfig) (*GRPCTransport, error) {
	if err := cfg.Validate(); err != nil {
		if cfg.Listener != nil {
			_ = cfg.Listener.Close()
		}
		return nil, err
	}
	cfg = cfg.withDefaults()
	size := len(cfg.Addrs)
	t := &GRPCTransport{
		cfg:     cfg,
		rank:    cfg.Rank,
		size:    size,
		log:     cfg.Logger,
		box:     newMailbox(size),
		out:     make([]*peerOut, size),
		done:    make(chan struct{}),
		in:      make([]bool, size),
		inReady: make(chan struct{}),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	if size == 1 {
		close(t.inReady)
	}
	minPing := max(cfg.Keepalive/2, time.Second)
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(frameCodec{}),
		grpc.MaxRecvMsgSize(maxFrameBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.Keepalive, Timeout: cfg.Keepalive}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minPing, PermitWithoutStream: true}),
		grpc.StreamInterceptor(t.authStream),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(t.serverCreds()))
	}
	t.server = grpc.NewServer(opts...)
	t.server.RegisterService(&exchangeService, t)
	t.wg.Go(func() {
		if err := t.server.Serve(cfg.Listener); err != nil && !t.closing.Load() {
			t.fail(t.rank, fmt.Errorf("%w: serving on %s: %v", ErrPeerLost, cfg.Listener.Addr(), err))
		}
	})

	if err := t.connectAll(ctx); err != nil {
		t.shutdown(false)
		return nil, fmt.Errorf("parallel: rank %d of %d: %w", t.rank, t.size, err)
	}
	t.mu.Lock()
	t.established = true
	t.mu.Unlock()
	for _, p := range t.out {
		if p != nil {
			t.wg.Go(p.writeLoop)
			t.wg.Go(p.readLoop)
		}
	}
	return t, nil
}

// connectAll opens the stream to every peer and waits for every peer's stream.
func (t *GRPCTransport) connectAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	defer cancel()
	errs := make(chan error, t.size)
	for r := range t.size {
		if r != t.rank {
			go func() {
				p, err := t.connect(ctx, r)
				t.out[r] = p // each goroutine writes its own element; read after <-errs
				if err != nil {
					cancel() // give up on the others too
				}
				errs <- err
			}()
		}
	}
	var all []error
	for range t.size - 1 {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	select {
	case <-t.inReady:
	case <-t.done:
		return t.box.failure()
	case <-ctx.Done():
		t.mu.Lock()
		var missing []int
		for r, ok := range t.in {
			if !ok && r != t.rank {
				missing = append(missing, r)
			}
		}
		t.mu.Unlock()
		return fmt.Errorf("no stream from ranks %v: %w", missing, context.Cause(ctx))
	}
	return t.box.failure()
}

func (t *GRPCTransport) Rank() int { return t.rank }
func (t *GRPCTransport) Size() int { return t.size }

// Addr is the address this rank serves on, as the job knows it (Addrs[Rank]).
func (t *GRPCTransport) Addr() string { return t.cfg.Addrs[t.rank] }

// Send copies ts, then waits until gRPC has taken the message's last chunk (it
// may not have reached the peer yet). If ctx is cancelled first, Send returns
// ctx's error and the message is dropped, unless its last chunk was already on
// its way.
func (t *GRPCTransport) Send(ctx context.Context, to int, tag string, ts ...*tensors.Tensor) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.box.failure(); err != nil {
		return err
	}
	if to < 0 || to >= t.size {
		return fmt.Errorf("parallel: send to rank %d: out of range [0, %d)", to, t.size)
	}
	if len(tag) > maxTagLen {
		return fmt.Errorf("parallel: send to rank %d: tag of %d bytes, at most %d", to, len(tag), maxTagLen)
	}
	if to == t.rank {
		msg, err := cloneMessage(to, tag, ts)
		if err != nil {
			return err
		}
		t.box.put(to, tag, msg)
		t.bytesSent.Add(msg.bytes)
		return nil
	}
	var size int64
	for _, x := range ts {
		if x != nil {
			size += x.Shape().ByteSize()
		}
	}
	if size > t.cfg.MaxMessageBytes { // the peer would refuse it, failing the job
		return fmt.Errorf("parallel: send to rank %d, tag %q: message of %d bytes is larger than MaxMessageBytes %d",
			to, tag, size, t.cfg.MaxMessageBytes)
	}
	m, err := newOutMsg(ctx, to, tag, ts)
	if err != nil {
		return err
	}
	if t.box.departed(to) {
		return errDeparted(to)
	}
	return t.out[to].send(m)
}

// Recv takes the oldest message from (from, tag), waiting for it.
func (t *GRPCTransport) Recv(ctx context.Context, from int, tag string, want ...Spec) ([]*tensors.Tensor, error) {
	return t.box.recv(ctx, t.size, from, tag, want)
}

// Stats counts payload bytes (tensor data, not frame headers) of whole
// messages received, bytes handed to gRPC, and time blocked in Recv.
func (t *GRPCTransport) Stats() Stats {
	return Stats{
		BytesSent:       t.bytesSent.Load(),
		BytesRecv:       t.box.bytesRecv.Load(),
		RecvWaitSeconds: time.Duration(t.box.waitNanos.Load()).Seconds(),
	}
}

// fail marks the transport failed because of peer rank; the first call wins.
func (t *GRPCTransport) fail(rank int, err error) {
	if t.box.fail(&PeerError{Rank: rank, Err: err}) && !t.closing.Load() {
		t.log.Error("parallel: transport failed", "rank", t.rank, "peer", rank, "err", err)
	}
	t.doneOnce.Do(func() { close(t.done) })
}

// Close says goodbye to every peer (unless the transport failed), waits up to
// CloseTimeout for them to take it, and releases everything. Pending calls
// fail with ErrClosed, or with the failure that came first.
func (t *GRPCTransport) Close() error {
	t.closeOnce.Do(func() { t.shutdown(true) })
	return nil
}

// shutdown is Close; goodbye is false when NewGRPC gives up.
func (t *GRPCTransport) shutdown(goodbye bool) {
	t.closing.Store(true)
	if t.box.fail(ErrClosed) && goodbye {
		t.clean.Store(true)
	}
	t.doneOnce.Do(func() { close(t.done) })
	if t.clean.Load() {
		// The write loops send goodbye and half-close; a peer's handler returns
		// once it has read both, which ends our read loop of that stream.
		wait, cancel := context.WithTimeout(context.Background(), t.cfg.CloseTimeout)
		defer cancel()
		for _, p := range t.out {
			if p == nil {
				continue
			}
			select {
			case <-p.finished:
			case <-wait.Done():
				t.log.Warn("parallel: close: peer did not take goodbye", "rank", t.rank, "peer", p.rank)
			}
		}
	}
	t.cancel()
	for _, p := range t.out {
		if p != nil {
			p.cancel()
			_ = p.conn.Close()
		}
	}
	t.server.Stop()
	t.wg.Wait()
}
