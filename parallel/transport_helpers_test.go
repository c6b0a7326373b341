package parallel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/parallel"
)

// Helpers shared by the transport tests.

type newJobFunc func(t *testing.T, n int) []parallel.Transport

var transports = []struct {
	name string
	job  newJobFunc
}{
	{"local", func(t *testing.T, n int) []parallel.Transport {
		ts := parallel.NewLocal(n)
		t.Cleanup(func() { closeAll(ts) })
		return ts
	}},
	{"grpc", func(t *testing.T, n int) []parallel.Transport {
		var ts []parallel.Transport
		for _, g := range newGRPCJob(t, n, nil) {
			ts = append(ts, g)
		}
		return ts
	}},
}

func closeAll(ts []parallel.Transport) {
	for _, tr := range ts {
		_ = tr.Close()
	}
}

// listen opens a listener on a free loopback port.
func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// newGRPCJob starts an n-rank gRPC job in this process, its streams mutual TLS
// (each rank's certificate from the CA of one cluster secret, as launch does);
// mod may adjust each rank's config (TLS nil: plaintext). The transports are
// closed when the test ends.
func newGRPCJob(t testing.TB, n int, mod func(*parallel.GRPCConfig)) []*parallel.GRPCTransport {
	t.Helper()
	lis := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range n {
		lis[i] = listen(t)
		addrs[i] = lis[i].Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ts := make([]*parallel.GRPCTransport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := parallel.GRPCConfig{Rank: i, Addrs: addrs, Listener: lis[i], ConnectTimeout: 15 * time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TLS: testTLS(t, testSecret)}
		if mod != nil {
			mod(&cfg)
		}
		wg.Go(func() { ts[i], errs[i] = parallel.NewGRPC(ctx, cfg) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, tr := range ts {
			if tr != nil {
				_ = tr.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ts
}

// testSecret is the cluster secret of the jobs newGRPCJob starts.
const testSecret = "the test job's secret"

// testTLS is a rank's TLS identity in the job of the given cluster secret: the
// CA derived from it and a fresh certificate.
func testTLS(t testing.TB, secret string) *parallel.TLSIdentity {
	t.Helper()
	id, err := parallel.DeriveTLS([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// onEveryRank runs fn for every rank at once and fails the test with every error.
func onEveryRank(t *testing.T, ts []parallel.Transport, fn func(ctx context.Context, tr parallel.Transport) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, tr := range ts {
		wg.Go(func() {
			if err := fn(ctx, tr); err != nil {
				errs[i] = fmt.Errorf("rank %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func next(tr parallel.Transport) int { return (tr.Rank() + 1) % tr.Size() }
func prev(tr parallel.Transport) int { return (tr.Rank() + tr.Size() - 1) % tr.Size() }

func rawBytes(t *tensors.Tensor) []byte {
	var b []byte
	if err := t.ConstBytes(func(data []byte) { b = bytes.Clone(data) }); err != nil {
		panic(err)
	}
	return b
}

// sameTensor reports how got differs from want, bit for bit, or "".
func sameTensor(got, want *tensors.Tensor) string {
	if got.DType() != want.DType() || !got.Shape().Equal(want.Shape()) {
		return fmt.Sprintf("got %s, want %s", got.Shape(), want.Shape())
	}
	if !bytes.Equal(rawBytes(got), rawBytes(want)) {
		return fmt.Sprintf("%s: data differs", got.Shape())
	}
	return ""
}

// syncBuffer is a log sink for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BenchmarkRingExchange: two ranks swap 8 MiB tensors, both sending first.
func BenchmarkRingExchange(b *testing.B) {
	for _, impl := range transports {
		b.Run(impl.name, func(b *testing.B) {
			var ts []parallel.Transport
			if impl.name == "local" {
				ts = parallel.NewLocal(2)
			} else {
				for _, g := range newGRPCJob(b, 2, nil) {
					ts = append(ts, g)
				}
			}
			x := ringBlock(0)
			ctx := context.Background()
			b.SetBytes(2 * 4 * ringElems)
			for b.Loop() {
				var wg sync.WaitGroup
				for _, tr := range ts {
					wg.Go(func() {
						if err := tr.Send(ctx, next(tr), "b", x); err != nil {
							b.Error(err)
						}
						if _, err := tr.Recv(ctx, prev(tr), "b"); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
		})
	}
}
