package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/host"
)

// Params holds every parameter of a model as a host tensor, by Hugging Face name.
// All tensors share one dtype (Float32 or Float64).
type Params struct {
	Config Config
	DType  dtypes.DType
	T      map[string]*tensors.Tensor
	// LoRA is the adapters' configuration when the model has them (their
	// tensors are in T, see AdapterNames); nil otherwise.
	LoRA *LoRA
}

// Names lists the parameters in the model's fixed order.
func (p *Params) Names() []string { return p.Config.ParamNames() }

// Get returns a parameter, panicking on an unknown name (a programming error).
func (p *Params) Get(name string) *tensors.Tensor {
	t, ok := p.T[name]
	if !ok {
		panic(fmt.Sprintf("model: no parameter %q", name))
	}
	return t
}

// NumParams is the total count of scalars.
func (p *Params) NumParams() int {
	n := 0
	for _, t := range p.T {
		n += t.Size()
	}
	return n
}

// Init makes freshly initialised parameters: norms at 1, biases at 0, every matrix
// normal with standard deviation std (output projections scaled by 1/sqrt(2*layers),
// as GPT-2 does). The biases draw nothing, so a model with them has the same
// matrices as the model without.
func Init(cfg Config, dtype dtypes.DType, std float64, seed uint64) (*Params, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dtype != dtypes.Float32 && dtype != dtypes.Float64 {
		return nil, fmt.Errorf("model: dtype %s not supported (float32 or float64)", dtype)
	}
	rng := rand.New(rand.NewPCG(seed, 0x70727573))
	p := &Params{Config: cfg, DType: dtype, T: map[string]*tensors.Tensor{}}
	for _, name := range cfg.ParamNames() {
		shape, err := cfg.ParamShape(name)
		if err != nil {
			return nil, err
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		vals := make([]float64, n)
		switch {
		case IsBias(name): // zero, as transformers' _init_weights leaves a Linear's bias
		case IsNorm(name):
			for i := range vals {
				vals[i] = 1
			}
		default:
			s := std
			if strings.HasSuffix(name, OProj) || strings.HasSuffix(name, DownProj) {
				s = std / math.Sqrt(2*float64(cfg.Layers))
			}
			for i := range vals {
				vals[i] = rng.NormFloat64() * s
			}
		}
		p.T[name] = host.FromFloat64(dtype, vals, shape...)
	}
	return p, nil
}
