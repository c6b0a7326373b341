package trainer

import (
	"context"
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
)

// update clips the gradients by their global norm and applies AdamW with
// learning rate lr; it returns the norm before clipping. A non-finite loss or
// norm applies nothing (applied is false): the weights and the optimizer's
// moments and step count stay those of the step before.
func (t *Trainer) update(ctx context.Context, lr, loss float64) (norm float64, applied bool, err error) {
	if t.devOpt == nil {
		err = t.withOptimParams(func(ps []optim.Param) error {
			gs := make([]optim.Vec, len(ps))
			for i, p := range ps {
				gs[i] = p.Grad
			}
			if norm = optim.ClipGlobalNorm(t.Config.MaxGradNorm, gs...); !finite(norm) || !finite(loss) {
				return nil
			}
			applied = true
			if t.zeroActive() {
				return t.updateShard(ctx, lr, ps)
			}
			return t.hostOpt.Step(lr, ps)
		})
		return norm, applied, err
	}
	gs := make([]*tensors.Tensor, len(t.order))
	for i, name := range t.order {
		gs[i] = t.grads[name]
	}
	norm, err = t.Engine.Device.ClipGlobalNorm(t.Config.MaxGradNorm, gs)
	for i, name := range t.order {
		t.grads[name] = gs[i] // clipping replaced them
	}
	if err != nil || !finite(norm) || !finite(loss) {
		return norm, false, err
	}
	ps := make([]optim.DeviceParam, len(t.order))
	for i, name := range t.order {
		ps[i] = optim.DeviceParam{Name: name, Decay: t.decays(name), Value: t.Params.T[name], Grad: gs[i]}
	}
	err = t.devOpt.Step(lr, ps)
	for i, name := range t.order {
		t.Params.T[name] = ps[i].Value // the update donated the old tensor
	}
	return norm, err == nil, err
}

// decays reports whether weight decay applies to a parameter.
func (t *Trainer) decays(name string) bool {
	switch {
	case model.IsNorm(name):
		return t.Config.DecayNorms
	case model.IsEmbedding(name):
		return t.Config.DecayEmbeddings
	case model.IsBias(name): // as Hugging Face's Trainer: biases take no weight decay
		return false
	}
	return true
}

// withOptimParams hands fn every parameter and gradient as flat slices, holding
// each tensor's data for the duration.
func (t *Trainer) withOptimParams(fn func([]optim.Param) error) error {
	ps := make([]optim.Param, len(t.order))
	var rec func(i int) error
	rec = func(i int) error {
		if i == len(t.order) {
			return fn(ps)
		}
		name := t.order[i]
		ps[i].Name, ps[i].Decay = name, t.decays(name)
		var err error
		flat(t.Params.T[name], func(v optim.Vec) {
			ps[i].Value = v
			flat(t.grads[name], func(g optim.Vec) {
				ps[i].Grad = g
				err = rec(i + 1)
			})
		})
		return err
	}
	return rec(0)
}

func flat(t *tensors.Tensor, fn func(optim.Vec)) {
	t.MustMutableFlatData(func(f any) {
		switch v := f.(type) {
		case []float32:
			fn(optim.Vec{F32: v})
		case []float64:
			fn(optim.Vec{F64: v})
		default:
			panic(fmt.Sprintf("trainer: parameter of dtype %s", t.DType()))
		}
	})
}
