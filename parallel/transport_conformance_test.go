package parallel_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/parallel"
)

// The conformance suite: every Transport must pass it. It runs against the
// in-process transport and against real gRPC on 127.0.0.1, for 1, 2 and 4 ranks.

func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, ts []parallel.Transport)
	}{
		{"Ring8MiB", testRing},
		{"TagsOutOfOrder", testTagsOutOfOrder},
		{"RoundTripBitExact", testRoundTrip},
		{"SendToSelfCopies", testSendToSelf},
		{"SpecMismatch", testSpecMismatch},
		{"Cancel", testCancel},
		{"Close", testClose},
	}
	for _, impl := range transports {
		for _, n := range []int{1, 2, 4} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/n=%d/%s", impl.name, n, c.name), func(t *testing.T) {
					c.run(t, impl.job(t, n))
				})
			}
		}
	}
}

const ringElems = 2 << 20 // 8 MiB of float32

// ringPattern is the data of the ring test's tensors, but for the marks.
var ringPattern = sync.OnceValue(func() []float32 {
	flat := make([]float32, ringElems)
	for i := range flat {
		flat[i] = float32(i % 65521)
	}
	return flat
})

// ringBlock is rank owner's tensor in the ring test: the pattern with the
// owner's number at 64 places.
func ringBlock(owner int) *tensors.Tensor {
	flat := slices.Clone(ringPattern())
	for i := range 64 {
		flat[i*(ringElems/64)] = float32(-owner)
	}
	return tensors.FromFlatDataAndDimensions(flat, ringElems)
}

// ringOwner checks that got is a ringBlock and returns its owner. It touches
// the data with whole-slice operations only, which keeps it fast under -race.
func ringOwner(got *tensors.Tensor) (int, error) {
	owner := -1
	err := tensors.ConstFlatData(got, func(flat []float32) {
		owner = int(-flat[0])
		pattern := ringPattern()
		for i := range 64 {
			lo, hi := i*(ringElems/64), (i+1)*(ringElems/64)
			if flat[lo] != float32(-owner) || !slices.Equal(flat[lo+1:hi], pattern[lo+1:hi]) {
				owner = -1
				return
			}
		}
	})
	if err == nil && owner < 0 {
		err = errors.New("data differs from what was sent")
	}
	return owner, err
}

// testRing passes 8 MiB tensors around the ring, every rank sending to next
// before receiving from prev, as ring attention does: the receiving side must
// take the data in while the Recv caller is still sending.
func testRing(t *testing.T, ts []parallel.Transport) {
	want := parallel.Spec{DType: "float32", Shape: []int{ringElems}}
	onEveryRank(t, ts, func(ctx context.Context, tr parallel.Transport) error {
		x := ringBlock(tr.Rank())
		n := tr.Size()
		steps := min(n, 2)
		for step := 1; step <= steps; step++ {
			if err := tr.Send(ctx, next(tr), "ring", x); err != nil {
				return err
			}
			got, err := tr.Recv(ctx, prev(tr), "ring", want)
			if err != nil {
				return err
			}
			owner, err := ringOwner(got[0])
			if want := (tr.Rank() - step%n + n) % n; err != nil || owner != want {
				return fmt.Errorf("step %d: got rank %d's block (%v), want rank %d's", step, owner, err, want)
			}
			x = got[0]
		}
		s := tr.Stats() // the job is new: these are the ring's bytes
		size := int64(steps) * 4 * ringElems
		if sent, recv := s.BytesSent, s.BytesRecv; sent != size || recv != size {
			return fmt.Errorf("stats: sent %d, received %d bytes, want %d each", sent, recv, size)
		}
		return nil
	})
}

func scalarI32(v int32) *tensors.Tensor { return tensors.FromScalar(v) }

// testTagsOutOfOrder receives tags in another order than they were sent; within
// a tag, messages keep their order.
func testTagsOutOfOrder(t *testing.T, ts []parallel.Transport) {
	onEveryRank(t, ts, func(ctx context.Context, tr parallel.Transport) error {
		for i, tag := range []string{"a", "b", "a", "c"} {
			if err := tr.Send(ctx, next(tr), tag, scalarI32(int32(i))); err != nil {
				return err
			}
		}
		for _, r := range []struct {
			tag  string
			want int32
		}{{"c", 3}, {"a", 0}, {"b", 1}, {"a", 2}} {
			got, err := tr.Recv(ctx, prev(tr), r.tag, parallel.Spec{DType: "int32"})
			if err != nil {
				return err
			}
			if v := tensors.ToScalar[int32](got[0]); v != r.want {
				return fmt.Errorf("tag %q: got %d, want %d", r.tag, v, r.want)
			}
		}
		return nil
	})
}

// oddTensors are tensors of every wire dtype whose bits must survive exactly.
func oddTensors() []*tensors.Tensor {
	f32 := []float32{float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00001),
		math.Float32frombits(0x80000000), math.Float32frombits(1), math.MaxFloat32}
	f64 := []float64{math.Inf(-1), math.Float64frombits(0x7ff8000000000abc), math.Float64frombits(1 << 63),
		math.SmallestNonzeroFloat64, math.Pi}
	i32 := []int32{math.MinInt32, math.MaxInt32, -1, 0, 7, 42}
	return []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(f32, 2, 3),
		tensors.FromFlatDataAndDimensions(f64, 5),
		tensors.FromFlatDataAndDimensions(i32, 3, 1, 2),
		tensors.FromScalar(float64(-2.5)),
		tensors.FromFlatDataAndDimensions([]float32{}, 0, 4), // zero-size
	}
}

func testRoundTrip(t *testing.T, ts []parallel.Transport) {
	onEveryRank(t, ts, func(ctx context.Context, tr parallel.Transport) error {
		if err := tr.Send(ctx, next(tr), "odd", oddTensors()...); err != nil {
			return err
		}
		if err := tr.Send(ctx, next(tr), "empty"); err != nil { // a message with no tensor
			return err
		}
		got, err := tr.Recv(ctx, prev(tr), "odd")
		if err != nil {
			return err
		}
		want := oddTensors()
		if len(got) != len(want) {
			return fmt.Errorf("got %d tensors, want %d", len(got), len(want))
		}
		for i := range want {
			if d := sameTensor(got[i], want[i]); d != "" {
				return fmt.Errorf("tensor %d: %s", i, d)
			}
		}
		if got, err := tr.Recv(ctx, prev(tr), "empty"); err != nil || len(got) != 0 {
			return fmt.Errorf("empty message: got %d tensors, %v", len(got), err)
		}
		return nil
	})
}

// testSendToSelf: a rank may send to itself, and Send copies the data.
func testSendToSelf(t *testing.T, ts []parallel.Transport) {
	onEveryRank(t, ts, func(ctx context.Context, tr parallel.Transport) error {
		x := tensors.FromFlatDataAndDimensions([]float64{1, 2, 3}, 3)
		if err := tr.Send(ctx, tr.Rank(), "self", x); err != nil {
			return err
		}
		if err := tr.Send(ctx, next(tr), "next", x); err != nil {
			return err
		}
		tensors.MustMutableFlatData(x, func(f []float64) { f[0] = 99 })
		for _, r := range []struct {
			from int
			tag  string
		}{{tr.Rank(), "self"}, {prev(tr), "next"}} {
			got, err := tr.Recv(ctx, r.from, r.tag, parallel.Spec{DType: "float64", Shape: []int{3}})
			if err != nil {
				return err
			}
			if v := tensors.MustCopyFlatData[float64](got[0]); v[0] != 1 {
				return fmt.Errorf("%s: got %v: Send did not copy", r.tag, v)
			}
		}
		return nil
	})
}

// testSpecMismatch: a message not matching Recv's Specs fails with ErrProtocol
// naming the peer, the tag and both shapes; the transport stays usable.
func testSpecMismatch(t *testing.T, ts []parallel.Transport) {
	onEveryRank(t, ts, func(ctx context.Context, tr parallel.Transport) error {
		x := tensors.FromFlatDataAndDimensions([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
		for range 4 {
			if err := tr.Send(ctx, next(tr), "spec", x); err != nil {
				return err
			}
		}
		for _, want := range [][]parallel.Spec{
			{{DType: "float32", Shape: []int{3, 2}}},
			{{DType: "int32", Shape: []int{2, 3}}},
			{{DType: "float32", Shape: []int{2, 3}}, {}},
		} {
			_, err := tr.Recv(ctx, prev(tr), "spec", want...)
			var pe *parallel.PeerError
			if !errors.As(err, &pe) || pe.Rank != prev(tr) || !errors.Is(err, parallel.ErrProtocol) {
				return fmt.Errorf("want %v: got %v, want an ErrProtocol PeerError naming rank %d", want, err, prev(tr))
			}
			if msg := err.Error(); !strings.Contains(msg, `"spec"`) || !strings.Contains(msg, "[2 3]") {
				return fmt.Errorf("error %q does not name the tag and the shape", msg)
			}
		}
		// The transport still works: the fourth message is received.
		_, err := tr.Recv(ctx, prev(tr), "spec", parallel.Spec{DType: "float32", Shape: []int{2, 3}})
		return err
	})
}

// testCancel: a cancelled ctx makes Recv and Send return its error promptly.
func testCancel(t *testing.T, ts []parallel.Transport) {
	tr := ts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := tr.Recv(ctx, prev(tr), "never"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv: got %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Recv took %v to notice its deadline", d)
	}
	if s := tr.Stats(); s.RecvWaitSeconds <= 0 {
		t.Errorf("RecvWaitSeconds = %v after a blocked Recv", s.RecvWaitSeconds)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	if err := tr.Send(done, next(tr), "x", scalarI32(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: got %v, want %v", err, context.Canceled)
	}
	if _, err := tr.Recv(done, next(tr), "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv: got %v, want %v", err, context.Canceled)
	}
	// The transport still works after cancellations.
	bg, cancelBg := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelBg()
	if err := tr.Send(bg, tr.Rank(), "after", scalarI32(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Recv(bg, tr.Rank(), "after"); err != nil {
		t.Fatal(err)
	}
}

// testClose: after Close, the rank's calls fail with ErrClosed; its peers'
// calls with it fail with ErrPeerLost naming it, after its earlier messages.
func testClose(t *testing.T, ts []parallel.Transport) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	last := ts[len(ts)-1]
	if err := last.Send(ctx, 0, "before", scalarI32(5)); err != nil {
		t.Fatal(err)
	}
	if err := last.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := last.Recv(ctx, 0, "x"); !errors.Is(err, parallel.ErrClosed) {
		t.Fatalf("Recv after Close: got %v, want ErrClosed", err)
	}
	if err := last.Send(ctx, 0, "x", scalarI32(1)); !errors.Is(err, parallel.ErrClosed) {
		t.Fatalf("Send after Close: got %v, want ErrClosed", err)
	}
	if len(ts) == 1 {
		return
	}
	r := last.Rank()
	if got, err := ts[0].Recv(ctx, r, "before"); err != nil || tensors.ToScalar[int32](got[0]) != 5 {
		t.Fatalf("message sent before Close: %v", err)
	}
	_, err := ts[0].Recv(ctx, r, "after")
	var pe *parallel.PeerError
	if !errors.As(err, &pe) || pe.Rank != r || !errors.Is(err, parallel.ErrPeerLost) {
		t.Fatalf("Recv from closed rank: got %v, want ErrPeerLost naming rank %d", err, r)
	}
	if err := ts[0].Send(ctx, r, "x", scalarI32(1)); !errors.As(err, &pe) || pe.Rank != r {
		t.Fatalf("Send to closed rank: got %v, want a PeerError naming rank %d", err, r)
	}
}
