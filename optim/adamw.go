package optim

import (
	"fmt"
	"math"
	"strings"
)

// Float is the element type of parameters and gradients.
type Float interface{ float32 | float64 }

// Vec is one parameter tensor's flat data, or its gradient's: exactly one of F32/F64 is set.
type Vec struct {
	F32 []float32
	F64 []float64
}

// Len is the number of scalars.
func (v Vec) Len() int { return len(v.F32) + len(v.F64) }

// Param is one parameter with its gradient, as the optimizer sees it.
type Param struct {
	Name  string
	Decay bool // apply weight decay
	Value Vec
	Grad  Vec
}

// AdamWConfig are AdamW's hyperparameters (the learning rate is given per step).
type AdamWConfig struct {
	Beta1, Beta2, Eps, WeightDecay float64
}

// Validate names the first hyperparameter out of range.
func (c AdamWConfig) Validate() error {
	switch {
	case c.Beta1 < 0 || c.Beta1 >= 1:
		return fmt.Errorf("optim: beta1 must be in [0, 1), got %g", c.Beta1)
	case c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("optim: beta2 must be in [0, 1), got %g", c.Beta2)
	case c.Eps <= 0:
		return fmt.Errorf("optim: eps must be > 0, got %g", c.Eps)
	case c.WeightDecay < 0:
		return fmt.Errorf("optim: weight_decay must be >= 0, got %g", c.WeightDecay)
	}
	return nil
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:
//
//	m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//	p -= lr * (wd*p + (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps))
//
// Moments are kept in the parameter's own dtype, by parameter name.
// Not safe for concurrent use.
type AdamW struct {
	cfg   AdamWConfig
	t     int
	state map[string]*moments
}

type moments struct{ m, v Vec }

// NewAdamW makes an optimizer with empty state.
func NewAdamW(cfg AdamWConfig) *AdamW {
	return &AdamW{cfg: cfg, state: map[string]*moments{}}
}

// Steps is the number of updates applied so far.
func (o *AdamW) Steps() int { return o.t }

// StateBytes is the size of the optimizer state.
func (o *AdamW) StateBytes() int64 {
	var n int64
	for _, s := range o.state {
		n += int64(len(s.m.F32)+len(s.v.F32))*4 + int64(len(s.m.F64)+len(s.v.F64))*8
	}
	return n
}

// Moments returns a parameter's first and second moments (nil before its first step).
func (o *AdamW) Moments(name string) (m, v Vec, ok bool) {
	s, ok := o.state[name]
	if !ok {
		return Vec{}, Vec{}, false
	}
	return s.m, s.v, true
}

// State suffixes: the keys of State and SetState are a parameter's name plus one
// of these, as PyTorch's AdamW state_dict names its moments.
const (
	FirstMoment  = ".exp_avg"
	SecondMoment = ".exp_avg_sq"
)

// State returns the moments by key (name+FirstMoment, name+SecondMoment),
// sharing the optimizer's memory: copy them before the next Step if they must
// not change.
func (o *AdamW) State() map[string]Vec {
	out := make(map[string]Vec, 2*len(o.state))
	for name, s := range o.state {
		out[name+FirstMoment], out[name+SecondMoment] = s.m, s.v
	}
	return out
}

// SetState replaces the optimizer's state with steps updates taken and the
// moments of state (keys as State's; the slices are used, not copied). Every
// key must come in a pair of equal lengths.
func (o *AdamW) SetState(steps int, state map[string]Vec) error {
	pairs, err := momentPairs(steps, state)
	if err != nil {
		return err
	}
	next := make(map[string]*moments, len(pairs))
	for name, mv := range pairs {
		next[name] = &moments{m: mv[0], v: mv[1]}
	}
	o.t, o.state = steps, next
	return nil
}

// momentPairs checks a state map (keys NAME+FirstMoment and NAME+SecondMoment,
// every key in a pair of equal lengths and dtypes) and returns it by parameter
// name: [first moment, second moment].
func momentPairs(steps int, state map[string]Vec) (map[string][2]Vec, error) {
	if steps < 0 {
		return nil, fmt.Errorf("optim: %d steps", steps)
	}
	pairs := map[string][2]Vec{}
	for key, m := range state {
		name, ok := strings.CutSuffix(key, FirstMoment)
		if !ok {
			if _, ok := strings.CutSuffix(key, SecondMoment); ok {
				continue // checked with its pair
			}
			return nil, fmt.Errorf("optim: state key %q is neither NAME%s nor NAME%s", key, FirstMoment, SecondMoment)
		}
		v, ok := state[name+SecondMoment]
		if !ok {
			return nil, fmt.Errorf("optim: state has %q but no %q", key, name+SecondMoment)
		}
		if m.Len() != v.Len() || (m.F32 == nil) != (v.F32 == nil) {
			return nil, fmt.Errorf("optim: %s: moments of different lengths or dtypes", name)
		}
		pairs[name] = [2]Vec{m, v}
	}
	for key := range state {
		if name, ok := strings.CutSuffix(key, SecondMoment); ok {
			if _, paired := pairs[name]; !paired {
				return nil, fmt.Errorf("optim: state has %q but no %q", key, name+FirstMoment)
			}
		}
	}
	return pairs, nil
}

// Step applies one update with learning rate lr to every parameter.
func (o *AdamW) Step(lr float64, params []Param) error {
	o.t++
	bc1 := 1 - math.Pow(o.cfg.Beta1, float64(o.t))
	bc2 := 1 - math.Pow(o.cfg.Beta2, float64(o.t))
	for _, p := range params {
		if p.Value.Len() != p.Grad.Len() {
			return fmt.Errorf("optim: %s: %d values but %d gradients", p.Name, p.Value.Len(), p.Grad.Len())
		}
		s := o.state[p.Name]
		if s == nil {
			s = &moments{}
			if p.Value.F32 != nil {
				s.m.F32, s.v.F32 = make([]float32, len(p.Value.F32)), make([]float32, len(p.Value.F32))
			} else {
				s.m.F64, s.v.F64 = make([]float64, len(p.Value.F64)), make([]float64, len(p.Value.F64))
			}
			o.state[p.Name] = s
		} else if s.m.Len() != p.Value.Len() {
			return fmt.Errorf("optim: %s: %d values but moments of %d (state restored for another model?)", p.Name, p.Value.Len(), s.m.Len())
		}
		wd := 0.0
		if p.Decay {
			wd = o.cfg.WeightDecay
		}
		h := hyper{lr: lr, wd: wd, b1: o.cfg.Beta1, b2: o.cfg.Beta2, eps: o.cfg.Eps, bc1: bc1, bc2: bc2}
		if p.Value.F32 != nil {
			if p.Grad.F32 == nil || s.m.F32 == nil {
				return fmt.Errorf("optim: %s: mixed dtypes", p.Name)
			}
			update(h, p.Value.F32, p.Grad.F32, s.m.F32, s.v.F32)
		} else {
			if p.Grad.F64 == nil || s.m.F64 == nil {
				return fmt.Errorf("optim: %s: mixed dtypes", p.Name)
			}
			update(h, p.Value.F64, p.Grad.F64, s.m.F64, s.v.F64)
		}
	}
	return nil
}

type hyper struct{ lr, wd, b1, b2, eps, bc1, bc2 float64 }

// update is the element loop, computed in float64 whatever the storage dtype.
func update[T Float](h hyper, p, g, m, v []T) {
	for i := range p {
		gi := float64(g[i])
		mi := h.b1*float64(m[i]) + (1-h.b1)*gi
		vi := h.b2*float64(v[i]) + (1-h.b2)*gi*gi
		m[i], v[i] = T(mi), T(vi)
		pi := float64(p[i])
		pi -= h.lr * (h.wd*pi + (mi/h.bc1)/(math.Sqrt(vi/h.bc2)+h.eps))
		p[i] = T(pi)
	}
}

// GlobalNorm is the L2 norm of all the vectors together, accumulated in float64.
func GlobalNorm(vs ...Vec) float64 {
	var s float64
	for _, v := range vs {
		for _, x := range v.F32 {
			s += float64(x) * float64(x)
		}
		for _, x := range v.F64 {
			s += x * x
		}
	}
	return math.Sqrt(s)
}

// ClipGlobalNorm scales the vectors so their global norm is at most maxNorm (no-op
// when maxNorm <= 0) and returns the norm before clipping.
func ClipGlobalNorm(maxNorm float64, vs ...Vec) float64 {
	norm := GlobalNorm(vs...)
	if maxNorm > 0 && norm > maxNorm {
		Scale(maxNorm/(norm+1e-6), vs...)
	}
	return norm
}

// Scale multiplies every element by f.
func Scale(f float64, vs ...Vec) {
	for _, v := range vs {
		for i := range v.F32 {
			v.F32[i] = float32(float64(v.F32[i]) * f)
		}
		for i := range v.F64 {
			v.F64[i] *= f
		}
	}
}
