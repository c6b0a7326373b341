package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/host"
)

// LoRA adapters: a targeted projection W [out, in] computes with W + s B A,
// A [rank, in], B [out, rank], s = alpha/rank (Hu et al., 2021; PEFT's layout).
// The base weights stay frozen. Adapters live in Params.T beside the base
// weights, named as PEFT names them without its "base_model.model." prefix:
// model.layers.3.self_attn.q_proj.lora_A.weight.

// LoRA is the adapter configuration of a model. The zero value has none.
type LoRA struct {
	Rank    int
	Alpha   float64
	Targets []string // short names: q, k, v, o, gate, up, down
	// TrainEmbed and TrainNorm make the token embedding and every norm weight
	// train too (LongLoRA needs both to extend the context).
	TrainEmbed, TrainNorm bool
}

// loraModules are the projections adapters may target, short name to parameter
// suffix, in the order the layer computes them.
var loraModules = []struct{ short, suffix string }{
	{"q", QProj}, {"k", KProj}, {"v", VProj}, {"o", OProj},
	{"gate", GateProj}, {"up", UpProj}, {"down", DownProj},
}

// Enabled reports whether the model has adapters.
func (l LoRA) Enabled() bool { return l.Rank > 0 }

// Scale is alpha/rank, what B A is multiplied by.
func (l LoRA) Scale() float64 { return l.Alpha / float64(l.Rank) }

// Validate names the first bad field.
func (l LoRA) Validate() error {
	switch {
	case l.Rank < 1:
		return fmt.Errorf("model: lora rank must be >= 1, got %d", l.Rank)
	case !(l.Alpha > 0) || math.IsInf(l.Alpha, 0):
		return fmt.Errorf("model: lora alpha must be > 0, got %v", l.Alpha)
	case len(l.Targets) == 0:
		return fmt.Errorf("model: lora needs at least one target module")
	}
	for _, t := range l.Targets {
		if loraSuffix(t) == "" {
			return fmt.Errorf("model: lora target %q does not exist (q, k, v, o, gate, up, down)", t)
		}
	}
	return nil
}

func loraSuffix(short string) string {
	for _, m := range loraModules {
		if m.short == short {
			return m.suffix
		}
	}
	return ""
}

// Targets reports whether the adapters target the projection with this
// parameter suffix (QProj, ...).
func (l LoRA) Targeted(suffix string) bool {
	for _, t := range l.Targets {
		if loraSuffix(t) == suffix {
			return true
		}
	}
	return false
}

// targetedSuffixes are the targeted projections among suffixes, in that order.
func (l LoRA) targetedSuffixes(suffixes ...string) []string {
	var out []string
	for _, s := range suffixes {
		if l.Targeted(s) {
			out = append(out, s)
		}
	}
	return out
}

// LoRAName is the name of layer's adapter matrix ab ("A" or "B") on the
// projection with parameter suffix (QProj, ...).
func LoRAName(layer int, suffix, ab string) string {
	return LayerParam(layer, strings.TrimSuffix(suffix, ".weight")+".lora_"+ab+".weight")
}

// AdapterNames lists the adapter parameters: per layer, per targeted
// projection in the layer's order, A then B. None without adapters.
func (p *Params) AdapterNames() []string {
	if p.LoRA == nil {
		return nil
	}
	var names []string
	for i := range p.Config.Layers {
		for _, m := range loraModules {
			if p.LoRA.Targeted(m.suffix) {
				names = append(names, LoRAName(i, m.suffix, "A"), LoRAName(i, m.suffix, "B"))
			}
		}
	}
	return names
}

// Trainable lists the parameters that train, in a fixed order: every base
// weight without adapters; with them, the adapters and the base weights
// LoRA.TrainEmbed/TrainNorm name.
func (p *Params) Trainable() []string {
	if p.LoRA == nil {
		return p.Names()
	}
	var names []string
	for _, n := range p.Names() {
		if (p.LoRA.TrainEmbed && IsEmbedding(n)) || (p.LoRA.TrainNorm && IsNorm(n)) {
			names = append(names, n)
		}
	}
	return append(names, p.AdapterNames()...)
}

// KeepsStored reports whether a run with these adapters may keep the base
// weight name in the dtype it was stored in (bfloat16 or float16) rather than
// the master dtype: the frozen matrices (projections, the untrained embedding,
// lm_head). They are read in half precision and widened a layer at a time as
// the step reaches them (LoRAPieces.Layer, AsDType), which changes no value;
// the norms and biases are too small to matter and stay in the master dtype.
func (l LoRA) KeepsStored(name string) bool {
	return !IsNorm(name) && !IsBias(name) && !(l.TrainEmbed && IsEmbedding(name))
}

// AddLoRA gives p fresh adapters: A uniform in +-1/sqrt(in) (PEFT's default,
// Kaiming-uniform with a = sqrt(5)), B zero, so the model computes exactly
// what it did. The draws depend only on seed.
func AddLoRA(p *Params, l LoRA, seed uint64) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if p.LoRA != nil {
		return fmt.Errorf("model: the model has adapters already")
	}
	l.Targets = canonicalTargets(l.Targets)
	p.LoRA = &l
	rng := rand.New(rand.NewPCG(seed, 0x6c6f7261))
	for i := range p.Config.Layers {
		for _, m := range loraModules {
			if !l.Targeted(m.suffix) {
				continue
			}
			shape, err := p.Config.ParamShape(LayerParam(i, m.suffix))
			if err != nil {
				return err
			}
			out, in := shape[0], shape[1]
			a := make([]float64, l.Rank*in)
			bound := 1 / math.Sqrt(float64(in))
			for j := range a {
				a[j] = (2*rng.Float64() - 1) * bound
			}
			p.T[LoRAName(i, m.suffix, "A")] = host.FromFloat64(p.DType, a, l.Rank, in)
			p.T[LoRAName(i, m.suffix, "B")] = host.NewZeros(p.DType, out, l.Rank)
		}
	}
	return nil
}

// checkAdapters checks every adapter tensor is present with its shape.
func (p *Params) checkAdapters() error {
	if p.LoRA == nil {
		return nil
	}
	for i := range p.Config.Layers {
		for _, m := range loraModules {
			if !p.LoRA.Targeted(m.suffix) {
				continue
			}
			shape, _ := p.Config.ParamShape(LayerParam(i, m.suffix))
			for _, ab := range []string{"A", "B"} {
				name := LoRAName(i, m.suffix, ab)
				want := []int{p.LoRA.Rank, shape[1]}
				if ab == "B" {
					want = []int{shape[0], p.LoRA.Rank}
				}
				t, ok := p.T[name]
				switch {
				case !ok:
					return fmt.Errorf("model: no adapter %q", name)
				case !slices.Equal(t.Shape().Dimensions, want):
					return fmt.Errorf("model: adapter %q has shape %v, want %v", name, t.Shape().Dimensions, want)
				case t.DType() != p.DType:
					return fmt.Errorf("model: adapter %q is %s, the model %s", name, t.DType(), p.DType)
				}
			}
		}
	}
	return nil
}

// MergeLoRA returns the model with its adapters folded into the weights
// (W + s B A, computed in float64), and no adapters: what export and inference
// use. Without adapters it returns p itself.
func MergeLoRA(p *Params) (*Params, error) {
	if p.LoRA == nil {
		return p, nil
	}
	if err := p.checkAdapters(); err != nil {
		return nil, err
	}
	out := &Params{Config: p.Config, DType: p.DType, T: map[string]*tensors.Tensor{}}
	for _, name := range p.Names() {
		out.T[name] = p.T[name]
	}
	s := p.LoRA.Scale()
	r := p.LoRA.Rank
	for i := range p.Config.Layers {
		for _, m := range loraModules {
			if !p.LoRA.Targeted(m.suffix) {
				continue
			}
			name := LayerParam(i, m.suffix)
			w := host.ToFloat64(p.T[name])
			a := host.ToFloat64(p.T[LoRAName(i, m.suffix, "A")])
			b := host.ToFloat64(p.T[LoRAName(i, m.suffix, "B")])
			dims := p.T[name].Shape().Dimensions
			rows, cols := dims[0], dims[1]
			for o := range rows {
				for k := range r {
					bk := s * b[o*r+k]
					if bk == 0 {
						continue
					}
					row, arow := w[o*cols:(o+1)*cols], a[k*cols:(k+1)*cols]
					for j := range row {
						row[j] += bk * arow[j]
					}
				}
			}
			out.T[name] = host.FromFloat64(p.DType, w, rows, cols)
		}
	}
	return out, nil
}

// LoadInference reads a model folder for evaluation and generation: a Hugging
// Face folder or a checkpoint folder (which is one), with the LoRA adapters it
// holds (adapter_config.json + adapter_model.safetensors) merged into the weights.
func LoadInference(dir string, dtype dtypes.DType) (*Params, error) {
	return LoadInferenceKeeping(dir, dtype, nil)
}

// LoadInferenceKeeping is LoadInference keeping the tensors keep names in their
// stored half-precision dtype (see LoadHFKeeping).
func LoadInferenceKeeping(dir string, dtype dtypes.DType, keep func(name string) bool) (*Params, error) {
	p, err := LoadHFKeeping(dir, dtype, keep)
	if err != nil {
		return nil, err
	}
	if ok, err := HasAdapters(dir); err != nil || !ok {
		return p, err
	}
	if err := ReadAdapters(dir, p); err != nil {
		return nil, err
	}
	return MergeLoRA(p)
}

// canonicalTargets lists the targets in the layer's order (q, k, v, o, gate,
// up, down), so two equal configurations compare equal.
func canonicalTargets(ts []string) []string {
	var out []string
	for _, m := range loraModules {
		if slices.Contains(ts, m.short) {
			out = append(out, m.short)
		}
	}
	return out
}
