package parallel

import (
	"context"
	"crypto/subtle"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The cluster token: when GRPCConfig.Token is set, every stream a rank opens
// carries it in its metadata, and every stream opened to the rank must carry
// the same one, or it is refused (codes.Unauthenticated) before a frame is
// read, and the refusal is logged on both sides. The token authenticates the
// streams; it does not encrypt them. With GRPCConfig.TLS (tls.go) the
// certificates authenticate and encrypt every connection before a stream is
// opened, and the token, where set too, is a second check that travels
// encrypted: launch sets both from the cluster secret.

// tokenKey is the metadata key of the cluster token.
const tokenKey = "torus-cluster-token"

// authStream is the server's stream interceptor.
func (t *GRPCTransport) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if t.cfg.Token == "" {
		return handler(srv, ss)
	}
	md, _ := metadata.FromIncomingContext(ss.Context())
	got := md.Get(tokenKey)
	if len(got) == 1 && subtle.ConstantTimeCompare([]byte(got[0]), []byte(t.cfg.Token)) == 1 {
		return handler(srv, ss)
	}
	from := "an unknown address"
	if p, ok := peer.FromContext(ss.Context()); ok {
		from = p.Addr.String()
	}
	why := "it carries no cluster token"
	if len(got) > 0 {
		why = "its cluster token is wrong"
	}
	t.log.Error("parallel: refused a stream", "rank", t.rank, "from", from, "reason", why)
	return status.Errorf(codes.Unauthenticated, "rank %d refused the stream from %s: %s", t.rank, from, why)
}

// withToken adds this rank's token to a stream's context.
func (t *GRPCTransport) withToken(ctx context.Context) context.Context {
	if t.cfg.Token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, tokenKey, t.cfg.Token)
}
