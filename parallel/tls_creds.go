package parallel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/credentials"
)

// tlsCreds are gRPC's TLS credentials with this transport's refusals logged
// (see tls.go): a failed handshake would otherwise be seen only by gRPC's own
// logger, and a client refused by a TLS 1.3 server learns it only on its first
// read, after its handshake has returned.
type tlsCreds struct {
	credentials.TransportCredentials
	t *GRPCTransport
	// The client's: the rank it dials, and what to tell when the peer refuses
	// it or it refuses the peer. Nil on the server.
	peer    int
	refused func(error)
}

// TLSRefusal is why a TLS connection to a peer was refused, by the peer
// (ByPeer) or by this rank.
type TLSRefusal struct {
	Rank   int    // the peer
	Addr   string // its address
	ByPeer bool   // the peer refused this rank's certificate; else this rank refused the peer's
	Err    error
}

func (e *TLSRefusal) Error() string {
	if e.ByPeer {
		return fmt.Sprintf("TLS: rank %d at %s refused this rank's certificate (is it of the same job: the same cluster secret or CA?): %v", e.Rank, e.Addr, e.Err)
	}
	return fmt.Sprintf("TLS: refused the certificate of rank %d at %s (is it of the same job: the same cluster secret or CA?): %v", e.Rank, e.Addr, e.Err)
}

func (e *TLSRefusal) Unwrap() error { return e.Err }

func (t *GRPCTransport) serverCreds() credentials.TransportCredentials {
	return &tlsCreds{TransportCredentials: credentials.NewTLS(t.cfg.TLS.serverConfig()), t: t, peer: -1}
}

func (t *GRPCTransport) clientCreds(to int, refused func(error)) credentials.TransportCredentials {
	return &tlsCreds{TransportCredentials: credentials.NewTLS(t.cfg.TLS.clientConfig()), t: t, peer: to, refused: refused}
}

func (c *tlsCreds) Clone() credentials.TransportCredentials {
	return &tlsCreds{TransportCredentials: c.TransportCredentials.Clone(), t: c.t, peer: c.peer, refused: c.refused}
}

// ServerHandshake logs a connection that failed the handshake: a client
// without the job's certificate, or without TLS at all.
func (c *tlsCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	from := "an unknown address"
	if a := raw.RemoteAddr(); a != nil {
		from = a.String()
	}
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil && !c.t.closing.Load() {
		switch {
		case remoteAlert(err):
			c.t.log.Error("parallel: refused by a peer", "rank", c.t.rank, "addr", from, "err", "TLS: "+err.Error())
		case brokenConn(err):
			c.t.log.Debug("parallel: TLS handshake broke", "rank", c.t.rank, "from", from, "err", err)
		default:
			c.t.log.Error("parallel: refused a stream", "rank", c.t.rank, "from", from, "reason", "TLS: "+err.Error())
		}
	}
	return conn, info, err
}

// ClientHandshake logs, and reports, a server whose certificate this rank
// refuses, or that refuses this rank's (TLS 1.3: on the first read).
func (c *tlsCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	addr := c.t.cfg.Addrs[c.peer] // the authority is TLSServerName, the same for every peer
	if err != nil {
		switch {
		case c.t.closing.Load() || brokenConn(err):
		case remoteAlert(err):
			c.byPeer(addr, err)
		default:
			c.t.log.Error("parallel: refused a stream", "rank", c.t.rank, "peer", c.peer, "to", addr, "reason", "TLS: "+err.Error())
			c.refused(&TLSRefusal{Rank: c.peer, Addr: addr, Err: err})
		}
		return nil, nil, err
	}
	return &watchedConn{Conn: conn, onAlert: func(err error) { c.byPeer(addr, err) }}, info, nil
}

func (c *tlsCreds) byPeer(addr string, err error) {
	if c.t.closing.Load() {
		return
	}
	c.t.log.Error("parallel: refused by a peer", "rank", c.t.rank, "peer", c.peer, "addr", addr, "err", "TLS: "+err.Error())
	c.refused(&TLSRefusal{Rank: c.peer, Addr: addr, ByPeer: true, Err: err})
}

// watchedConn is a client's TLS connection: a TLS alert before the server has
// sent a byte is the server refusing this rank's certificate.
type watchedConn struct {
	net.Conn
	read    atomic.Bool
	once    sync.Once
	onAlert func(error)
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read.Store(true)
	}
	if err != nil && !c.read.Load() && remoteAlert(err) {
		c.once.Do(func() { c.onAlert(err) })
	}
	return n, err
}

// remoteAlert says whether err is a TLS alert the other side sent.
func remoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// brokenConn says whether err is a connection that ended, rather than one
// refused: closed, reset, timed out or cancelled.
func brokenConn(err error) bool {
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, os.ErrDeadlineExceeded,
		syscall.ECONNRESET, syscall.EPIPE, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
