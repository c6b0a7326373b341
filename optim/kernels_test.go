package optim_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/optim"
)

func shapeOf(dtype dtypes.DType, dims ...int) shapes.Shape { return shapes.Make(dtype, dims...) }

// gradSet is a set of gradients of mixed shapes and dtypes, on the host and as tensors.
func gradSet(rng *rand.Rand, scale float64) ([]optim.Vec, []*tensors.Tensor, [][]int) {
	dims := [][]int{{}, {17}, {64, 33}, {3, 4, 5}, {100_003}}
	dtype := []dtypes.DType{dtypes.Float32, dtypes.Float64, dtypes.Float32, dtypes.Float64, dtypes.Float32}
	vs := make([]optim.Vec, len(dims))
	ts := make([]*tensors.Tensor, len(dims))
	for i, d := range dims {
		vs[i] = randVec(rng, dtype[i], size(d))
		optim.Scale(scale, vs[i])
		ts[i] = tensorOf(vs[i], d...)
	}
	return vs, ts, dims
}

// The norm is a reduction in the backend's order: equal to GlobalNorm's
// sequential float64 sum within relative 1e-12, not bitwise.
const normTol = 1e-12

func TestKernelsGlobalNorm(t *testing.T) {
	eachBackend(t, func(t *testing.T, k *optim.Kernels) {
		rng := rand.New(rand.NewPCG(5, 6))
		for _, scale := range []float64{1, 1e-20, 1e20} {
			vs, ts, _ := gradSet(rng, scale)
			want := optim.GlobalNorm(vs...)
			got, err := k.GlobalNorm(ts...)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-want) > normTol*want {
				t.Errorf("scale %g: norm %.17g, want %.17g (relative %.2g)", scale, got, want, math.Abs(got-want)/want)
			}
		}
		if n, err := k.GlobalNorm(); n != 0 || err != nil {
			t.Errorf("norm of nothing: %g, %v", n, err)
		}
	})
}

// TestKernelsClipGlobalNorm: clipped (or left alone) as ClipGlobalNorm would with
// the same norm, bitwise.
func TestKernelsClipGlobalNorm(t *testing.T) {
	eachBackend(t, func(t *testing.T, k *optim.Kernels) {
		rng := rand.New(rand.NewPCG(7, 8))
		for _, tc := range []struct {
			name    string
			maxNorm float64 // in units of the norm
			clipped bool
		}{{"clipped", 0.3, true}, {"below", 2, false}, {"off", 0, false}} {
			vs, ts, _ := gradSet(rng, 1)
			want := optim.GlobalNorm(vs...)
			maxNorm := tc.maxNorm * want
			norm, err := k.ClipGlobalNorm(maxNorm, ts)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(norm-want) > normTol*want {
				t.Errorf("%s: norm %.17g, want %.17g", tc.name, norm, want)
			}
			if tc.clipped {
				optim.Scale(maxNorm/(norm+1e-6), vs...) // the host's clip, from the device's norm
			}
			for i := range vs {
				if d := bitwiseDiff(vecOf(ts[i]), vs[i]); d != "" {
					t.Errorf("%s: tensor %d: %s", tc.name, i, d)
				}
			}
			if after := optim.GlobalNorm(vs...); tc.clipped && after > maxNorm*(1+1e-6) { // float32 rounding may overshoot by ~1e-7
				t.Errorf("%s: norm %g after clipping to %g", tc.name, after, maxNorm)
			}
		}
	})
}

func TestKernelsScale(t *testing.T) {
	eachBackend(t, func(t *testing.T, k *optim.Kernels) {
		rng := rand.New(rand.NewPCG(9, 10))
		for _, f := range []float64{0.1, 1.0 / 3, 0.7071067811865476, 1e-7, 3} {
			vs, ts, _ := gradSet(rng, 1)
			optim.Scale(f, vs...)
			if err := k.Scale(f, ts); err != nil {
				t.Fatal(err)
			}
			for i := range vs {
				if d := bitwiseDiff(vecOf(ts[i]), vs[i]); d != "" {
					t.Errorf("scale %g: tensor %d: %s", f, i, d)
				}
			}
		}
	})
}

func TestKernelsAccumulate(t *testing.T) {
	eachBackend(t, func(t *testing.T, k *optim.Kernels) {
		rng := rand.New(rand.NewPCG(11, 12))
		for _, tc := range []struct {
			dtype dtypes.DType
			dims  []int
		}{{dtypes.Float32, []int{31, 7}}, {dtypes.Float64, []int{31, 7}}, {dtypes.Float32, nil}, {dtypes.Float64, []int{1000}}} {
			n := size(tc.dims)
			acc := randVec(rng, tc.dtype, n)
			dst := tensorOf(acc, tc.dims...)
			for micro := range 4 { // accumulation over micro-batches
				src := randVec(rng, tc.dtype, n)
				for i := range acc.F32 {
					acc.F32[i] += src.F32[i] // float32 sum, as host.AddInto
				}
				for i := range acc.F64 {
					acc.F64[i] += src.F64[i]
				}
				var err error
				if dst, err = k.Accumulate(dst, tensorOf(src, tc.dims...)); err != nil {
					t.Fatal(err)
				}
				if d := bitwiseDiff(vecOf(dst), acc); d != "" {
					t.Errorf("%s %v micro-batch %d: %s", tc.dtype, tc.dims, micro, d)
				}
			}
		}
		for _, tc := range []struct{ dst, src *tensors.Tensor }{
			{tensors.FromShape(shapeOf(dtypes.Float32, 2)), tensors.FromShape(shapeOf(dtypes.Float32, 3))},
			{tensors.FromShape(shapeOf(dtypes.Float32, 2)), tensors.FromShape(shapeOf(dtypes.Float64, 2))},
			{tensors.FromShape(shapeOf(dtypes.Int32, 2)), tensors.FromShape(shapeOf(dtypes.Int32, 2))},
		} {
			if _, err := k.Accumulate(tc.dst, tc.src); err == nil {
				t.Errorf("Accumulate(%s, %s): want an error", tc.dst.Shape(), tc.src.Shape())
			}
		}
	})
}

// BenchmarkAdamW compares AdamW.Step on host slices with DeviceAdamW.Step on each
// test backend, for a few float32 matrices (ns/op is one step over all of them).
func BenchmarkAdamW(b *testing.B) {
	cfg := optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	dims := [][]int{{1024, 1024}, {1024, 1024}, {1024, 4096}, {4096}}
	rng := rand.New(rand.NewPCG(13, 14))
	hp := make([]optim.Param, len(dims))
	for i, d := range dims {
		hp[i] = optim.Param{Name: fmt.Sprint("w", i), Decay: true, Value: randVec(rng, dtypes.Float32, size(d)), Grad: randVec(rng, dtypes.Float32, size(d))}
	}
	b.Run("host", func(b *testing.B) {
		opt := optim.NewAdamW(cfg)
		for b.Loop() {
			if err := opt.Step(1e-4, hp); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, be := range testBackends {
		b.Run(be.name+"-backend", func(b *testing.B) {
			backend, err := be.open()
			if err != nil {
				b.Fatal(err)
			}
			k, err := optim.NewKernels(backend)
			if err != nil {
				b.Fatal(err)
			}
			opt := optim.NewDeviceAdamW(k, cfg)
			dp := make([]optim.DeviceParam, len(hp))
			for i, p := range hp {
				dp[i] = optim.DeviceParam{Name: p.Name, Decay: true, Value: tensorOf(p.Value, dims[i]...), Grad: tensorOf(p.Grad, dims[i]...)}
			}
			if err := opt.Step(1e-4, dp); err != nil { // compiles
				b.Fatal(err)
			}
			for b.Loop() {
				if err := opt.Step(1e-4, dp); err != nil {
					b.Fatal(err)
				}
			}
			_ = vecOf(dp[len(dp)-1].Value) // waits for a device's queued work
		})
	}
}
