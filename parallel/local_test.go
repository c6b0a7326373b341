package parallel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/parallel"
)

func TestLocalFail(t *testing.T) {
	ts := parallel.NewLocal(3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	boom := errors.New("boom")
	pending := make(chan error)
	go func() { _, err := ts[0].Recv(ctx, 2, "x"); pending <- err }()
	ts[1].(*parallel.LocalTransport).Fail(boom)
	check := func(what string, err error) {
		t.Helper()
		var pe *parallel.PeerError
		if !errors.As(err, &pe) || pe.Rank != 1 || !errors.Is(err, parallel.ErrPeerLost) || !errors.Is(err, boom) {
			t.Errorf("%s: got %v, want a PeerError naming rank 1 wrapping ErrPeerLost and boom", what, err)
		}
	}
	check("pending Recv", <-pending)
	for _, tr := range ts {
		_, err := tr.Recv(ctx, 0, "y")
		check(fmt.Sprintf("rank %d Recv", tr.Rank()), err)
		check(fmt.Sprintf("rank %d Send", tr.Rank()), tr.Send(ctx, 0, "y", scalarI32(1)))
	}
}

func TestSendRejectsUnsupported(t *testing.T) {
	for _, impl := range transports {
		t.Run(impl.name, func(t *testing.T) {
			tr := impl.job(t, 1)[0]
			ctx := context.Background()
			i64 := tensors.FromShape(tensors.FromScalar(int64(1)).Shape())
			if i64.DType() != dtypes.Int64 {
				t.Fatal("setup")
			}
			for name, err := range map[string]error{
				"int64":        tr.Send(ctx, 0, "x", i64),
				"nil":          tr.Send(ctx, 0, "x", nil),
				"out of range": tr.Send(ctx, 1, "x", scalarI32(1)),
			} {
				if err == nil {
					t.Errorf("%s: Send succeeded", name)
				}
			}
			if _, err := tr.Recv(ctx, -1, "x"); err == nil {
				t.Error("Recv from rank -1 succeeded")
			}
		})
	}
}
