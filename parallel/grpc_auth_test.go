package parallel_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/torusml/torus/parallel"
)

// startTokenJob starts a 2-rank job whose ranks carry the given tokens, with
// each rank's log in logs[rank]. It returns the transports (nil where NewGRPC
// failed), NewGRPC's errors and the ranks' addresses.
func startTokenJob(t *testing.T, tokens [2]string, timeout time.Duration) ([2]*parallel.GRPCTransport, [2]error, [2]*syncBuffer, []string) {
	t.Helper()
	lis := []net.Listener{listen(t), listen(t)}
	addrs := []string{lis[0].Addr().String(), lis[1].Addr().String()}
	var (
		ts   [2]*parallel.GRPCTransport
		errs [2]error
		logs = [2]*syncBuffer{{}, {}}
		wg   sync.WaitGroup
	)
	for r := range 2 {
		cfg := parallel.GRPCConfig{Rank: r, Addrs: addrs, Listener: lis[r], ConnectTimeout: timeout, Token: tokens[r],
			Logger: slog.New(slog.NewTextHandler(logs[r], nil))}
		wg.Go(func() { ts[r], errs[r] = parallel.NewGRPC(context.Background(), cfg) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, tr := range ts {
			if tr != nil {
				_ = tr.Close()
			}
		}
	})
	return ts, errs, logs, addrs
}

// TestGRPCTokenWrongCannotConnect: ranks with different tokens never form a
// job, at least one is refused naming the wrong token, and the refusal is logged
// on both sides (one refused a stream, the other was refused). (The rank that did the refusing may wait out its timeout: a rank with the
// right token might still come, and an intruder must not end a job; whether it
// too is refused depends on whether its own dial lands before the other gives up.)
func TestGRPCTokenWrongCannotConnect(t *testing.T) {
	const timeout = 6 * time.Second
	_, errs, logs, _ := startTokenJob(t, [2]string{"right", "wrong"}, timeout)
	refused := 0
	for r := range 2 {
		if errs[r] == nil {
			t.Errorf("rank %d joined a job whose other rank has another token", r)
			continue
		}
		if strings.Contains(errs[r].Error(), "cluster token is wrong") {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("no rank was refused naming the wrong token: %v", errs)
	}
	all := logs[0].String() + logs[1].String()
	for _, want := range []string{"refused a stream", "refused by a peer"} {
		if !strings.Contains(all, want) {
			t.Errorf("no rank logged %q:\n%s", want, all)
		}
	}
}

// TestGRPCTokenRefusesIntruder: in a job whose ranks share a token, a stream
// opened without it, or with another one, is refused before its frames are
// read: the tensor it sends claiming to be rank 1's never reaches rank 0, and
// the job goes on.
func TestGRPCTokenRefusesIntruder(t *testing.T) {
	ts, errs, logs, addrs := startTokenJob(t, [2]string{"s3cret", "s3cret"}, 15*time.Second)
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for name, md := range map[string]metadata.MD{"no token": nil, "wrong token": metadata.Pairs("torus-cluster-token", "guess")} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ctx = metadata.NewOutgoingContext(ctx, md)
		stream, err := conn.NewStream(ctx, &rawService.Streams[0], exchangeMethod, grpc.WaitForReady(true))
		if err == nil {
			_ = stream.SendMsg(wf{kind: kHello, from: 1, size: 2}.encode())
			_ = stream.SendMsg(chunkF32(1, 0, 1, 0, f32Bytes(666)).encode())
			var ack []byte
			err = stream.RecvMsg(&ack)
		}
		cancel()
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: the stream got %v, want Unauthenticated", name, err)
		}
	}
	for _, want := range []string{"carries no cluster token", "cluster token is wrong"} {
		if !strings.Contains(logs[0].String(), want) {
			t.Errorf("rank 0 did not log the refusal %q:\n%s", want, logs[0].String())
		}
	}
	// The job is unharmed, and what rank 0 receives from rank 1 is rank 1's.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts[1].Send(ctx, 0, "t", scalarI32(7)); err != nil {
		t.Fatal(err)
	}
	got, err := ts[0].Recv(ctx, 1, "t")
	if err != nil {
		t.Fatal(err)
	}
	if diff := sameTensor(got[0], scalarI32(7)); diff != "" {
		t.Errorf("rank 0 received %s", diff)
	}
}
