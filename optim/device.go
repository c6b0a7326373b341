package optim

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
)

// DeviceParam is one parameter with its gradient as tensors of one shape and
// dtype (float32 or float64), as DeviceAdamW sees them.
type DeviceParam struct {
	Name  string
	Decay bool            // apply weight decay
	Value *tensors.Tensor // donated to Step, which puts the updated tensor here
	Grad  *tensors.Tensor // only read
}

// DeviceAdamW is AdamW computed by compiled graphs (Kernels) on tensors: on a GPU,
// parameters, gradients and moments never leave the device. Its results are
// bitwise those of AdamW.Step on the same values (the update is computed in
// float64 in the same order, see adamwGraph), and its state reads and writes as
// AdamW's, so a checkpoint of one resumes the other.
//
// Moments are kept in the parameter's dtype, flat ([n] for a parameter of n
// elements), by parameter name, on the kernels' device.
// Not safe for concurrent use.
type DeviceAdamW struct {
	k     *Kernels
	cfg   AdamWConfig
	t     int
	state map[string]*deviceMoments
}

type deviceMoments struct{ m, v *tensors.Tensor } // [n] each

// NewDeviceAdamW makes an optimizer with empty state running on k's backend.
func NewDeviceAdamW(k *Kernels, cfg AdamWConfig) *DeviceAdamW {
	return &DeviceAdamW{k: k, cfg: cfg, state: map[string]*deviceMoments{}}
}

// Steps is the number of updates applied so far.
func (o *DeviceAdamW) Steps() int { return o.t }

// StateBytes is the size of the optimizer state.
func (o *DeviceAdamW) StateBytes() int64 {
	var n int64
	for _, s := range o.state {
		n += s.m.ByteSize() + s.v.ByteSize()
	}
	return n
}

// MomentTensors returns a parameter's first and second moments, flat [n] in the
// parameter's dtype (nil before its first step). They belong to the optimizer:
// the next Step donates them, after which they must not be used.
func (o *DeviceAdamW) MomentTensors(name string) (m, v *tensors.Tensor, ok bool) {
	s, ok := o.state[name]
	if !ok {
		return nil, nil, false
	}
	return s.m, s.v, true
}

// Moments returns host copies of a parameter's first and second moments (as
// AdamW.Moments, except that the vectors are copies).
func (o *DeviceAdamW) Moments(name string) (m, v Vec, ok bool, err error) {
	s, ok := o.state[name]
	if !ok {
		return Vec{}, Vec{}, false, nil
	}
	if m, err = toHost(s.m); err == nil {
		v, err = toHost(s.v)
	}
	if err != nil {
		return Vec{}, Vec{}, true, fmt.Errorf("optim: moments of %s: %w", name, err)
	}
	return m, v, true, nil
}

// HostState returns the moments by key (name+FirstMoment, name+SecondMoment),
// copied from the device to new host vectors.
func (o *DeviceAdamW) HostState() (map[string]Vec, error) {
	out := make(map[string]Vec, 2*len(o.state))
	for name := range o.state {
		m, v, _, err := o.Moments(name)
		if err != nil {
			return nil, err
		}
		out[name+FirstMoment], out[name+SecondMoment] = m, v
	}
	return out, nil
}

// State is HostState for the Optimizer interface: the moments copied from the
// device to the host (a transfer of StateBytes; unlike AdamW.State the vectors are
// the caller's). It panics if the device cannot be read: call HostState to get the
// error instead.
func (o *DeviceAdamW) State() map[string]Vec {
	s, err := o.HostState()
	if err != nil {
		panic(err)
	}
	return s
}

// SetState replaces the optimizer's state with steps updates taken and the
// moments of state (keys as State's; the vectors are copied, and go to the device
// on the next Step). Every key must come in a pair of equal lengths and dtypes.
func (o *DeviceAdamW) SetState(steps int, state map[string]Vec) error {
	pairs, err := momentPairs(steps, state)
	if err != nil {
		return err
	}
	next := make(map[string]*deviceMoments, len(pairs))
	for name, mv := range pairs {
		next[name] = &deviceMoments{m: fromVec(mv[0]), v: fromVec(mv[1])}
	}
	o.t, o.state = steps, next
	return nil
}

// Step applies one update with learning rate lr to every parameter: each Value is
// donated (updated in place on a GPU) and replaced by its updated tensor. Every
// parameter is checked before anything is updated; an error while executing
// leaves the parameters given so far updated and the failing one possibly lost.
func (o *DeviceAdamW) Step(lr float64, params []DeviceParam) error {
	for _, p := range params {
		if err := sameShape(p.Name, p.Value, p.Grad); err != nil {
			return err
		}
		if s := o.state[p.Name]; s != nil && (s.m.Size() != p.Value.Size() || s.m.DType() != p.Value.DType()) {
			return fmt.Errorf("optim: %s: %s values but moments of %s[%d] (state restored for another model?)",
				p.Name, p.Value.Shape(), s.m.DType(), s.m.Size())
		}
	}
	o.t++
	bc1 := 1 - math.Pow(o.cfg.Beta1, float64(o.t))
	bc2 := 1 - math.Pow(o.cfg.Beta2, float64(o.t))
	hyper := func(wd float64) *tensors.Tensor {
		h := make([]float64, numHyper)
		h[hLR], h[hWD], h[hEps], h[hBC1], h[hBC2], h[hOne] = lr, wd, o.cfg.Eps, bc1, bc2, 1
		h[hB1], h[hOneMinusB1] = o.cfg.Beta1, 1-o.cfg.Beta1 // 1-b1 rounded as update rounds it
		h[hB2], h[hOneMinusB2] = o.cfg.Beta2, 1-o.cfg.Beta2
		return tensors.FromFlatDataAndDimensions(h, numHyper)
	}
	// Two small inputs per step, moved to the device once and shared by every parameter.
	decay, noDecay := hyper(o.cfg.WeightDecay), hyper(0)
	defer decay.FinalizeAll()
	defer noDecay.FinalizeAll()
	for i := range params {
		h := noDecay
		if params[i].Decay {
			h = decay
		}
		if err := o.update(&params[i], h); err != nil {
			return err
		}
	}
	return nil
}

// update runs the AdamW kernel on one parameter, donating its value and moments.
func (o *DeviceAdamW) update(p *DeviceParam, hyper *tensors.Tensor) error {
	s := o.state[p.Name]
	if s == nil {
		out, err := o.k.run(o.k.zeros, 2, p.Value)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		s = &deviceMoments{m: out[0], v: out[1]}
		o.state[p.Name] = s
	}
	var donated [3]any // p, m, v: their buffers become the outputs'
	for i, t := range []*tensors.Tensor{p.Value, s.m, s.v} {
		d, err := o.k.donate(t)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		donated[i] = d
	}
	out, err := o.k.run(o.k.adamw, 3, hyper, donated[0], p.Grad, donated[1], donated[2])
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	p.Value, s.m, s.v = out[0], out[1], out[2]
	return nil
}

// fromVec is a new flat host tensor holding a copy of v.
func fromVec(v Vec) *tensors.Tensor {
	if v.F32 != nil {
		return tensors.FromFlatDataAndDimensions(v.F32, len(v.F32))
	}
	return tensors.FromFlatDataAndDimensions(v.F64, len(v.F64))
}

// toHost copies t into a new host vector, leaving no host copy cached in t.
func toHost(t *tensors.Tensor) (Vec, error) {
	h := tensors.FromShape(t.Shape())
	if err := h.CopyFrom(t); err != nil {
		return Vec{}, err
	}
	var v Vec
	err := h.ConstFlatData(func(flat any) {
		switch f := flat.(type) {
		case []float32:
			v.F32 = f
		case []float64:
			v.F64 = f
		}
	})
	if err == nil && v.F32 == nil && v.F64 == nil {
		err = fmt.Errorf("dtype %s, want %s or %s", t.DType(), dtypes.Float32, dtypes.Float64)
	}
	return v, err
}
