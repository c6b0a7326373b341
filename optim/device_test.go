package optim_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/gobackend"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/optim"
)

// backend is one backend the device tests run on.
type backend struct {
	name string
	open func() (compute.Backend, error)
}

// testBackends are the Go backend and any a build-tagged file adds
// (device_xla_test.go: XLA with a CUDA PJRT plugin).
var testBackends = []backend{{"go", sync.OnceValues(func() (compute.Backend, error) { return gobackend.New("") })}}

// eachBackend runs fn as a subtest with kernels on every test backend.
func eachBackend(t *testing.T, fn func(t *testing.T, k *optim.Kernels)) {
	for _, b := range testBackends {
		t.Run(b.name, func(t *testing.T) {
			be, err := b.open()
			if err != nil {
				t.Fatalf("backend %s: %v", b.name, err)
			}
			k, err := optim.NewKernels(be)
			if err != nil {
				t.Fatal(err)
			}
			fn(t, k)
		})
	}
}

// randVec is n values of dtype, of magnitudes from 1e-4 to 1e3 and some zeros.
func randVec(rng *rand.Rand, dtype dtypes.DType, n int) optim.Vec {
	x := make([]float64, n)
	for i := range x {
		if rng.IntN(10) > 0 {
			x[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(8)-4))
		}
	}
	if dtype == dtypes.Float32 {
		v := make([]float32, n)
		for i := range x {
			v[i] = float32(x[i])
		}
		return optim.Vec{F32: v}
	}
	return optim.Vec{F64: x}
}

// tensorOf is a host tensor of the given dimensions holding a copy of v.
func tensorOf(v optim.Vec, dims ...int) *tensors.Tensor {
	if v.F32 != nil {
		return tensors.FromFlatDataAndDimensions(append([]float32(nil), v.F32...), dims...)
	}
	return tensors.FromFlatDataAndDimensions(append([]float64(nil), v.F64...), dims...)
}

// vecOf copies a tensor's data to the host.
func vecOf(t *tensors.Tensor) optim.Vec {
	if t.DType() == dtypes.Float32 {
		return optim.Vec{F32: tensors.MustCopyFlatData[float32](t)}
	}
	return optim.Vec{F64: tensors.MustCopyFlatData[float64](t)}
}

// bitwiseDiff describes the first elements where got and want differ in any bit
// ("" when equal).
func bitwiseDiff(got, want optim.Vec) string {
	if got.Len() != want.Len() || (got.F32 == nil) != (want.F32 == nil) {
		return fmt.Sprintf("%d values (f32 %v), want %d (f32 %v)", got.Len(), got.F32 != nil, want.Len(), want.F32 != nil)
	}
	var diffs []string
	n := 0
	for i := range got.F32 {
		if math.Float32bits(got.F32[i]) != math.Float32bits(want.F32[i]) {
			if n++; n <= 3 {
				diffs = append(diffs, fmt.Sprintf("[%d] %.9g want %.9g", i, got.F32[i], want.F32[i]))
			}
		}
	}
	for i := range got.F64 {
		if math.Float64bits(got.F64[i]) != math.Float64bits(want.F64[i]) {
			if n++; n <= 3 {
				diffs = append(diffs, fmt.Sprintf("[%d] %.17g want %.17g", i, got.F64[i], want.F64[i]))
			}
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d differ: %s", n, got.Len(), strings.Join(diffs, ", "))
}

func size(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// TestDeviceAdamWMatchesAdamW: several steps over parameters of several shapes
// (two of one shape, sharing an executable; one large enough for the backends'
// vectorized, parallel paths), with and without decay: every
// parameter and moment bitwise equal to AdamW.Step's after every step.
func TestDeviceAdamWMatchesAdamW(t *testing.T) {
	type spec struct {
		dims  []int
		decay bool
	}
	specs := []spec{{nil, false}, {[]int{7}, true}, {[]int{3, 5}, true}, {[]int{3, 5}, false}, {[]int{4, 2, 3}, true}, {[]int{33, 65}, true}, {[]int{512, 512}, true}}
	for _, tc := range []struct {
		name  string
		dtype dtypes.DType
		cfg   optim.AdamWConfig
	}{
		{"f32", dtypes.Float32, optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}},
		{"f64", dtypes.Float64, optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}},
		{"f32-no-decay-odd-betas", dtypes.Float32, optim.AdamWConfig{Beta1: 0.8, Beta2: 0.999, Eps: 1e-6}},
		{"f64-no-decay-odd-betas", dtypes.Float64, optim.AdamWConfig{Beta1: 0.8, Beta2: 0.999, Eps: 1e-6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, k *optim.Kernels) {
				rng := rand.New(rand.NewPCG(1, 2))
				host, dev := optim.NewAdamW(tc.cfg), optim.NewDeviceAdamW(k, tc.cfg)
				hp := make([]optim.Param, len(specs))
				dp := make([]optim.DeviceParam, len(specs))
				for i, s := range specs {
					name := fmt.Sprintf("p%d", i)
					v := randVec(rng, tc.dtype, size(s.dims))
					hp[i] = optim.Param{Name: name, Decay: s.decay, Value: v}
					dp[i] = optim.DeviceParam{Name: name, Decay: s.decay, Value: tensorOf(v, s.dims...)}
				}
				for step := range 6 {
					lr := 1e-3 * float64(step+1) / 3 // changes every step: one compilation must serve all
					for i, s := range specs {
						g := randVec(rng, tc.dtype, size(s.dims))
						hp[i].Grad, dp[i].Grad = g, tensorOf(g, s.dims...)
					}
					if err := host.Step(lr, hp); err != nil {
						t.Fatal(err)
					}
					if err := dev.Step(lr, dp); err != nil {
						t.Fatal(err)
					}
					for i := range specs {
						name := hp[i].Name
						if d := bitwiseDiff(vecOf(dp[i].Value), hp[i].Value); d != "" {
							t.Errorf("step %d %s %v: parameter: %s", step+1, name, specs[i].dims, d)
						}
						hm, hv, _ := host.Moments(name)
						dm, dv, ok, err := dev.Moments(name)
						if err != nil || !ok {
							t.Fatalf("step %d %s: moments: %v %v", step+1, name, ok, err)
						}
						if d := bitwiseDiff(dm, hm); d != "" {
							t.Errorf("step %d %s: first moment: %s", step+1, name, d)
						}
						if d := bitwiseDiff(dv, hv); d != "" {
							t.Errorf("step %d %s: second moment: %s", step+1, name, d)
						}
						if got := dp[i].Value.Shape().Dimensions; size(got) != size(specs[i].dims) || len(got) != len(specs[i].dims) {
							t.Errorf("%s: updated shape %v, want %v", name, got, specs[i].dims)
						}
					}
					if t.Failed() {
						return
					}
				}
				if dev.Steps() != host.Steps() || dev.StateBytes() != host.StateBytes() {
					t.Errorf("steps %d, state %d bytes; want %d, %d", dev.Steps(), dev.StateBytes(), host.Steps(), host.StateBytes())
				}
			})
		})
	}
}

// TestDeviceAdamWStateRoundTrip: state moves between AdamW and DeviceAdamW (as a
// checkpoint moves it) and the two go on bitwise equal.
func TestDeviceAdamWStateRoundTrip(t *testing.T) {
	cfg := optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	dims := [][]int{{5, 3}, {4}}
	eachBackend(t, func(t *testing.T, k *optim.Kernels) {
		for _, dtype := range []dtypes.DType{dtypes.Float32, dtypes.Float64} {
			rng := rand.New(rand.NewPCG(3, 4))
			host := optim.NewAdamW(cfg)
			hp := make([]optim.Param, len(dims))
			for i, d := range dims {
				hp[i] = optim.Param{Name: fmt.Sprint("w", i), Decay: i == 0, Value: randVec(rng, dtype, size(d))}
			}
			grads := func() {
				for i, d := range dims {
					hp[i].Grad = randVec(rng, dtype, size(d))
				}
			}
			deviceParams := func() []optim.DeviceParam {
				dp := make([]optim.DeviceParam, len(hp))
				for i, p := range hp {
					dp[i] = optim.DeviceParam{Name: p.Name, Decay: p.Decay, Value: tensorOf(p.Value, dims[i]...), Grad: tensorOf(p.Grad, dims[i]...)}
				}
				return dp
			}
			for range 3 {
				grads()
				if err := host.Step(1e-2, hp); err != nil {
					t.Fatal(err)
				}
			}
			// host -> device, one step each.
			dev := optim.NewDeviceAdamW(k, cfg)
			if err := dev.SetState(host.Steps(), host.State()); err != nil {
				t.Fatal(err)
			}
			grads()
			dp := deviceParams()
			if err := dev.Step(1e-2, dp); err != nil {
				t.Fatal(err)
			}
			if err := host.Step(1e-2, hp); err != nil {
				t.Fatal(err)
			}
			for i := range hp {
				if d := bitwiseDiff(vecOf(dp[i].Value), hp[i].Value); d != "" {
					t.Errorf("%s: after resuming on the device: %s", dtype, d)
				}
			}
			// device -> host: State is a copy, equal to the host's.
			state := dev.State()
			for key, want := range host.State() {
				if d := bitwiseDiff(state[key], want); d != "" {
					t.Errorf("%s: State()[%q]: %s", dtype, key, d)
				}
			}
			if len(state) != 2*len(hp) {
				t.Errorf("State has %d keys, want %d", len(state), 2*len(hp))
			}
			again := optim.NewAdamW(cfg)
			if err := again.SetState(dev.Steps(), state); err != nil {
				t.Fatal(err)
			}
			grads()
			hp2 := make([]optim.Param, len(hp))
			for i, p := range hp {
				hp2[i] = p
				hp2[i].Value = vecOf(tensorOf(p.Value, p.Value.Len())) // a copy
			}
			if err := host.Step(1e-2, hp); err != nil {
				t.Fatal(err)
			}
			if err := again.Step(1e-2, hp2); err != nil {
				t.Fatal(err)
			}
			for i := range hp {
				if d := bitwiseDiff(hp2[i].Value, hp[i].Value); d != "" {
					t.Errorf("%s: after resuming on the host: %s", dtype, d)
				}
			}
			if m, _, ok := dev.MomentTensors("w0"); !ok || m.Shape().Rank() != 1 || m.DType() != dtype {
				t.Errorf("MomentTensors(w0): %v %v, want flat %s", ok, m.Shape(), dtype)
			}
		}
	})
}

// TestDeviceAdamWDonates: Step updates in place: the previous value's buffer went
// to the update, so on the Go backend (no separate host copy) the old tensor is
// finalized.
func TestDeviceAdamWDonates(t *testing.T) {
	be, err := testBackends[0].open()
	if err != nil {
		t.Fatal(err)
	}
	k, err := optim.NewKernels(be)
	if err != nil {
		t.Fatal(err)
	}
	opt := optim.NewDeviceAdamW(k, optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
	g := tensors.FromFlatDataAndDimensions([]float32{1, -2, 3}, 3)
	p := []optim.DeviceParam{{Name: "w", Value: tensors.FromFlatDataAndDimensions([]float32{1, 2, 3}, 3), Grad: g}}
	for step := range 3 {
		prev := p[0].Value
		m0, _, _ := opt.MomentTensors("w")
		if err := opt.Step(0.1, p); err != nil {
			t.Fatal(err)
		}
		if step > 0 && (prev.Ok() || m0.Ok()) {
			t.Errorf("step %d: the previous value or moment is still valid: not donated", step+1)
		}
		if !g.Ok() {
			t.Fatalf("step %d: the gradient was consumed", step+1)
		}
	}
}

func TestDeviceAdamWRejects(t *testing.T) {
	cfg := optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8}
	f32 := func(n int) *tensors.Tensor { return tensors.FromShape(shapeOf(dtypes.Float32, n)) }
	eachBackend(t, func(t *testing.T, k *optim.Kernels) {
		for _, tc := range []struct {
			name   string
			params []optim.DeviceParam
			state  map[string]optim.Vec
			want   string
		}{
			{"lengths", []optim.DeviceParam{{Name: "w", Value: f32(2), Grad: f32(3)}}, nil, "w:"},
			{"dtypes", []optim.DeviceParam{{Name: "w", Value: f32(2), Grad: tensors.FromShape(shapeOf(dtypes.Float64, 2))}}, nil, "w:"},
			{"int", []optim.DeviceParam{{Name: "w", Value: tensors.FromShape(shapeOf(dtypes.Int32, 2)), Grad: tensors.FromShape(shapeOf(dtypes.Int32, 2))}}, nil, "dtype"},
			{"nil grad", []optim.DeviceParam{{Name: "w", Value: f32(2)}}, nil, "nil"},
			{"state of another model", []optim.DeviceParam{{Name: "w", Value: f32(2), Grad: f32(2)}},
				map[string]optim.Vec{"w" + optim.FirstMoment: {F32: make([]float32, 3)}, "w" + optim.SecondMoment: {F32: make([]float32, 3)}}, "another model"},
		} {
			opt := optim.NewDeviceAdamW(k, cfg)
			if tc.state != nil {
				if err := opt.SetState(0, tc.state); err != nil {
					t.Fatal(err)
				}
			}
			err := opt.Step(1, tc.params)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
			}
			if opt.Steps() != 0 {
				t.Errorf("%s: a rejected step counted", tc.name)
			}
		}
		for _, state := range []map[string]optim.Vec{
			{"w.m": {F32: []float32{1}}},
			{"w" + optim.FirstMoment: {F32: []float32{1}}},
			{"w" + optim.SecondMoment: {F32: []float32{1}}},
			{"w" + optim.FirstMoment: {F32: []float32{1}}, "w" + optim.SecondMoment: {F64: []float64{1}}},
		} {
			if err := optim.NewDeviceAdamW(k, cfg).SetState(1, state); err == nil {
				t.Errorf("SetState(%v): want an error", state)
			}
		}
	})
}
