package trainer

import (
	"context"
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/optim"
	"github.com/torusml/torus/parallel"
)

// ZeRO stage 1 (Config.Zero = 1): the AdamW moments are split over every
// worker of the job (dp x sp). Each worker owns the same contiguous share of
// every trained tensor, elements [n*r/W, n*(r+1)/W) for rank r of W; after the
// gradients are summed (every worker holds them whole, as at zero 0), each
// updates its share alone, keeping moments for it only, and the updated shares
// are all-gathered. AdamW is elementwise, so every weight is bitwise what zero
// 0 gives; the optimizer state takes 1/W of the memory. A checkpoint gathers
// the moments to rank 0, which writes them whole as at zero 0, so any run
// resumes at any worker count and zero level.

// zeroActive reports whether this worker's optimizer state is sharded.
func (t *Trainer) zeroActive() bool { return t.Config.Zero > 0 && t.world() > 1 }

// share is rank r's range of a tensor of n elements.
func (t *Trainer) share(r, n int) (lo, hi int) {
	w := t.world()
	return n * r / w, n * (r + 1) / w
}

// updateShard is update's host path under ZeRO 1: ps are the whole tensors
// (the gradients clipped); the shares of this rank are stepped, then every
// rank's updated share is gathered into every tensor.
func (t *Trainer) updateShard(ctx context.Context, lr float64, ps []optim.Param) error {
	me := t.Rank()
	mine := make([]optim.Param, 0, len(ps))
	for _, p := range ps {
		lo, hi := t.share(me, p.Value.Len())
		if lo == hi {
			continue
		}
		mine = append(mine, optim.Param{Name: p.Name, Decay: p.Decay, Value: sliceVec(p.Value, lo, hi), Grad: sliceVec(p.Grad, lo, hi)})
	}
	if err := t.hostOpt.Step(lr, mine); err != nil {
		return err
	}
	all, err := t.gatherShares(ctx, fmt.Sprintf("zero/%d", t.step+1), func(f func(v optim.Vec)) {
		for _, p := range ps {
			f(p.Value)
		}
	}, true)
	if err != nil {
		return err
	}
	for r, flat := range all {
		off := 0
		for _, p := range ps {
			lo, hi := t.share(r, p.Value.Len())
			copyVec(sliceVec(p.Value, lo, hi), flat, off)
			off += hi - lo
		}
	}
	return nil
}

// gatherShares sends every rank's shares of the vectors each visits (in the
// same order on every rank) to every rank (toAll) or to rank 0 only, and
// returns them by rank (nil on the ranks that receive nothing).
func (t *Trainer) gatherShares(ctx context.Context, tag string, each func(func(optim.Vec)), toAll bool) ([]optim.Vec, error) {
	me, w := t.Rank(), t.world()
	var mine optim.Vec
	var f64 bool
	each(func(v optim.Vec) {
		lo, hi := t.share(me, v.Len())
		f64 = v.F64 != nil
		mine = appendVec(mine, sliceVec(v, lo, hi))
	})
	tensor := vecTensor(mine, f64)
	group := t.allRanks()
	if toAll {
		got, err := parallel.AllGather(ctx, t.dist.T, group, tag, []*tensors.Tensor{tensor})
		if err != nil {
			return nil, fmt.Errorf("zero: %w", err)
		}
		out := make([]optim.Vec, w)
		for r := range got {
			out[r] = tensorVec(got[r][0])
		}
		return out, nil
	}
	if me != 0 {
		if err := t.dist.T.Send(ctx, 0, tag, tensor); err != nil {
			return nil, fmt.Errorf("zero: send to rank 0: %w", err)
		}
		return nil, nil
	}
	out := make([]optim.Vec, w)
	out[0] = mine
	for r := 1; r < w; r++ {
		n := 0
		each(func(v optim.Vec) {
			lo, hi := t.share(r, v.Len())
			n += hi - lo
		})
		dt := "float32"
		if f64 {
			dt = "float64"
		}
		got, err := t.dist.T.Recv(ctx, r, tag, parallel.Spec{DType: dt, Shape: []int{n}})
		if err != nil {
			return nil, fmt.Errorf("zero: receive from rank %d: %w", r, err)
		}
		out[r] = tensorVec(got[0])
	}
	return out, nil
}

// gatherOptim collects the moments of every rank at a checkpoint step: on
// rank 0, whole, by State's keys, kept for SnapshotInto; the other ranks send
// theirs. Every rank calls it at the same step.
func (t *Trainer) gatherOptim(ctx context.Context) error {
	t.gathered = nil
	if !t.zeroActive() {
		return nil
	}
	state := t.hostOpt.State()
	type entry struct {
		key string
		n   int
	}
	var keys []entry
	for _, name := range t.order {
		n := t.Params.T[name].Size()
		keys = append(keys, entry{name + optim.FirstMoment, n}, entry{name + optim.SecondMoment, n})
	}
	dt := t.Params.DType
	zeros := func(n int) optim.Vec {
		if dt == dtypes.Float64 {
			return optim.Vec{F64: make([]float64, n)}
		}
		return optim.Vec{F32: make([]float32, n)}
	}
	// Each key's whole-length vector, this rank's share filled (zeros before a first step).
	whole := make([]optim.Vec, len(keys))
	for i, k := range keys {
		whole[i] = zeros(k.n)
		lo, _ := t.share(t.Rank(), k.n)
		if v, ok := state[k.key]; ok {
			copyVec(sliceVec(whole[i], lo, lo+v.Len()), v, 0)
		}
	}
	each := func(f func(optim.Vec)) {
		for _, v := range whole {
			f(v)
		}
	}
	all, err := t.gatherShares(ctx, fmt.Sprintf("zero-ckpt/%d", t.step), each, false)
	if err != nil || t.Rank() != 0 {
		return err
	}
	for r, flat := range all {
		off := 0
		for i := range keys {
			lo, hi := t.share(r, keys[i].n)
			copyVec(sliceVec(whole[i], lo, hi), flat, off)
			off += hi - lo
		}
	}
	t.gathered = map[string]optim.Vec{}
	for i, k := range keys {
		t.gathered[k.key] = whole[i]
	}
	t.gatheredStep = t.step
	return nil
}

// shardState keeps this rank's shares of whole moments (a checkpoint's).
func (t *Trainer) shardState(state map[string]optim.Vec) map[string]optim.Vec {
	if !t.zeroActive() {
		return state
	}
	out := make(map[string]optim.Vec, len(state))
	for key, v := range state {
		lo, hi := t.share(t.Rank(), v.Len())
		if lo < hi {
			out[key] = appendVec(optim.Vec{}, sliceVec(v, lo, hi))
		}
	}
	return out
}

func sliceVec(v optim.Vec, lo, hi int) optim.Vec {
	if v.F64 != nil {
		return optim.Vec{F64: v.F64[lo:hi]}
	}
	return optim.Vec{F32: v.F32[lo:hi]}
}

func appendVec(dst, v optim.Vec) optim.Vec {
	if v.F64 != nil {
		dst.F64 = append(dst.F64, v.F64...)
		if dst.F64 == nil {
			dst.F64 = []float64{}
		}
	} else {
		dst.F32 = append(dst.F32, v.F32...)
		if dst.F32 == nil {
			dst.F32 = []float32{}
		}
	}
	return dst
}

// copyVec copies src[off:off+len(dst)] into dst.
func copyVec(dst, src optim.Vec, off int) {
	if dst.F64 != nil {
		copy(dst.F64, src.F64[off:])
	} else {
		copy(dst.F32, src.F32[off:])
	}
}

func vecTensor(v optim.Vec, f64 bool) *tensors.Tensor {
	if f64 {
		return host.FromFloat64(dtypes.Float64, append([]float64{}, v.F64...), len(v.F64))
	}
	return tensors.FromFlatDataAndDimensions(append([]float32{}, v.F32...), len(v.F32))
}

func tensorVec(t *tensors.Tensor) optim.Vec {
	if t.DType() == dtypes.Float64 {
		return optim.Vec{F64: tensors.MustCopyFlatData[float64](t)}
	}
	return optim.Vec{F32: tensors.MustCopyFlatData[float32](t)}
}
