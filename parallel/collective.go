package parallel

import (
	"context"
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
)

// AllReduceSum replaces every tensor in ts by its sum over the ranks of group
// (which must hold this rank, in the same order on every rank), with a ring
// all-reduce: the tensors, flattened into one vector, are cut into len(group)
// segments; a reduce-scatter leaves each rank the full sum of one segment, and an
// all-gather hands those around. Each rank sends 2*(P-1)/P of the vector's bytes,
// and every rank ends with bit-identical sums. All tensors share one float dtype.
func AllReduceSum(ctx context.Context, t Transport, group []int, tag string, ts []*tensors.Tensor) error {
	P := len(group)
	if P <= 1 || len(ts) == 0 {
		return nil
	}
	me := -1
	for i, r := range group {
		if r == t.Rank() {
			me = i
		}
	}
	if me < 0 {
		return fmt.Errorf("parallel: all-reduce %s: rank %d is not in group %v", tag, t.Rank(), group)
	}
	dt := ts[0].DType()
	switch dt {
	case dtypes.Float32:
		return allReduce[float32](ctx, t, group, me, tag, ts)
	case dtypes.Float64:
		return allReduce[float64](ctx, t, group, me, tag, ts)
	}
	return fmt.Errorf("parallel: all-reduce %s: dtype %s not supported", tag, dt)
}

type float interface{ float32 | float64 }

func allReduce[T float](ctx context.Context, t Transport, group []int, me int, tag string, ts []*tensors.Tensor) error {
	P := len(group)
	var flat []T
	for _, x := range ts {
		if err := tensors.ConstFlatData(x, func(f []T) { flat = append(flat, f...) }); err != nil {
			return fmt.Errorf("parallel: all-reduce %s: %w", tag, err)
		}
	}
	n := len(flat)
	seg := func(i int) []T {
		i = ((i % P) + P) % P
		return flat[i*n/P : (i+1)*n/P]
	}
	next, prev := group[(me+1)%P], group[(me+P-1)%P]
	step := func(phase string, s int, send []T, recvInto []T, add bool) error {
		st := fmt.Sprintf("%s/%s/%d", tag, phase, s)
		errc := make(chan error, 1)
		go func() { errc <- t.Send(ctx, next, st, tensors.FromFlatDataAndDimensions(send, len(send))) }()
		got, err := t.Recv(ctx, prev, st, Spec{Shape: []int{len(recvInto)}})
		if serr := <-errc; serr != nil {
			return fmt.Errorf("parallel: all-reduce %s: send: %w", st, serr)
		}
		if err != nil {
			return fmt.Errorf("parallel: all-reduce %s: receive: %w", st, err)
		}
		return tensors.ConstFlatData(got[0], func(f []T) {
			if add {
				for i, x := range f {
					recvInto[i] += x
				}
			} else {
				copy(recvInto, f)
			}
		})
	}
	for s := range P - 1 { // reduce-scatter
		if err := step("rs", s, seg(me-s), seg(me-s-1), true); err != nil {
			return err
		}
	}
	for s := range P - 1 { // all-gather
		if err := step("ag", s, seg(me+1-s), seg(me-s), false); err != nil {
			return err
		}
	}
	off := 0
	for _, x := range ts {
		if err := tensors.MutableFlatData(x, func(f []T) { off += copy(f, flat[off:off+len(f)]) }); err != nil {
			return fmt.Errorf("parallel: all-reduce %s: %w", tag, err)
		}
	}
	return nil
}

// AllToAll sends parts[j] to group[j] and returns what each rank of the group
// sent here, in group order (parts[me] comes back to this rank itself). Every
// rank of the group must call it with the same tag.
func AllToAll(ctx context.Context, t Transport, group []int, tag string, parts [][]*tensors.Tensor) ([][]*tensors.Tensor, error) {
	if len(parts) != len(group) {
		return nil, fmt.Errorf("parallel: all-to-all %s: %d parts for a group of %d", tag, len(parts), len(group))
	}
	errc := make(chan error, len(group))
	for j, r := range group {
		go func() { errc <- t.Send(ctx, r, tag, parts[j]...) }()
	}
	got := make([][]*tensors.Tensor, len(group))
	var first error
	for j, r := range group {
		ts, err := t.Recv(ctx, r, tag)
		switch {
		case err != nil:
			err = fmt.Errorf("parallel: all-to-all %s: receive from rank %d: %w", tag, r, err)
		case len(ts) != len(parts[j]):
			err = &PeerError{Rank: r, Err: fmt.Errorf("%w: all-to-all %s: %d tensors, want %d", ErrProtocol, tag, len(ts), len(parts[j]))}
		}
		if err != nil && first == nil {
			first = err
		}
		got[j] = ts
	}
	for range group {
		if err := <-errc; err != nil && first == nil {
			first = fmt.Errorf("parallel: all-to-all %s: send: %w", tag, err)
		}
	}
	return got, first
}

// AllGather returns every group rank's ts, in group order.
func AllGather(ctx context.Context, t Transport, group []int, tag string, ts []*tensors.Tensor) ([][]*tensors.Tensor, error) {
	parts := make([][]*tensors.Tensor, len(group))
	for j := range parts {
		parts[j] = ts
	}
	return AllToAll(ctx, t, group, tag, parts)
}
