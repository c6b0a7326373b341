package optim_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/optim"
)

// adamwRef is AdamW written out for one scalar over several steps.
func adamwRef(p float64, grads []float64, lr, b1, b2, eps, wd float64) float64 {
	var m, v float64
	for t, g := range grads {
		m = b1*m + (1-b1)*g
		v = b2*v + (1-b2)*g*g
		mh := m / (1 - math.Pow(b1, float64(t+1)))
		vh := v / (1 - math.Pow(b2, float64(t+1)))
		p = p - lr*wd*p - lr*mh/(math.Sqrt(vh)+eps)
	}
	return p
}

func TestAdamWMatchesReference(t *testing.T) {
	cfg := optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	grads := []float64{0.5, -0.25, 1.5, 0.01}
	for _, decay := range []bool{true, false} {
		opt := optim.NewAdamW(cfg)
		p := []float64{2}
		for _, g := range grads {
			if err := opt.Step(1e-2, []optim.Param{{Name: "w", Decay: decay, Value: optim.Vec{F64: p}, Grad: optim.Vec{F64: []float64{g}}}}); err != nil {
				t.Fatal(err)
			}
		}
		wd := 0.0
		if decay {
			wd = cfg.WeightDecay
		}
		want := adamwRef(2, grads, 1e-2, cfg.Beta1, cfg.Beta2, cfg.Eps, wd)
		if math.Abs(p[0]-want) > 1e-12 {
			t.Errorf("decay=%v: got %.15g, want %.15g", decay, p[0], want)
		}
	}
}

func TestAdamWRejectsMismatch(t *testing.T) {
	opt := optim.NewAdamW(optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
	err := opt.Step(1, []optim.Param{{Name: "w", Value: optim.Vec{F32: make([]float32, 2)}, Grad: optim.Vec{F32: make([]float32, 3)}}})
	if err == nil {
		t.Fatal("want an error for mismatched lengths")
	}
}

func TestClipGlobalNorm(t *testing.T) {
	a := optim.Vec{F32: []float32{3, 0}}
	b := optim.Vec{F32: []float32{0, 4}}
	norm := optim.ClipGlobalNorm(1, a, b)
	if math.Abs(norm-5) > 1e-6 {
		t.Fatalf("norm %g, want 5", norm)
	}
	if after := optim.GlobalNorm(a, b); math.Abs(after-1) > 1e-5 {
		t.Fatalf("norm after clipping %g, want 1", after)
	}
	c := optim.Vec{F64: []float64{0.3, 0.4}}
	if n := optim.ClipGlobalNorm(1, c); math.Abs(n-0.5) > 1e-12 || c.F64[0] != 0.3 {
		t.Fatalf("a norm under the limit must not be scaled: %g %v", n, c.F64)
	}
}

func TestSchedule(t *testing.T) {
	s := optim.Schedule{LR: 1, WarmupSteps: 10, Steps: 110, Decay: "cosine", MinLRRatio: 0.1}
	cases := []struct {
		step int
		want float64
	}{{0, 0.1}, {9, 1}, {10, 1}, {60, 0.55}, {110, 0.1}, {500, 0.1}}
	for _, c := range cases {
		if got := s.At(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("cosine step %d: %g, want %g", c.step, got, c.want)
		}
	}
	s.Decay = "linear"
	if got := s.At(60); math.Abs(got-0.55) > 1e-12 {
		t.Errorf("linear step 60: %g", got)
	}
	s.Decay = "constant"
	if got := s.At(100); got != 1 {
		t.Errorf("constant: %g", got)
	}
	for _, bad := range []optim.Schedule{{LR: -1, Steps: 1, Decay: "cosine"}, {LR: 1, Steps: 0, Decay: "cosine"}, {LR: 1, Steps: 5, WarmupSteps: 6, Decay: "cosine"}, {LR: 1, Steps: 5, Decay: "step"}} {
		if bad.Validate() == nil {
			t.Errorf("%+v: want a validation error", bad)
		}
	}
}

func TestAdamWStateRoundTrip(t *testing.T) {
	params := func() []optim.Param {
		return []optim.Param{
			{Name: "a", Decay: true, Value: optim.Vec{F32: []float32{1, 2, 3}}, Grad: optim.Vec{F32: []float32{0.1, -0.2, 0.3}}},
			{Name: "b", Value: optim.Vec{F64: []float64{-1, 4}}, Grad: optim.Vec{F64: []float64{0.5, 0.25}}},
		}
	}
	cfg := optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	run := optim.NewAdamW(cfg)
	ps := params()
	for range 3 {
		if err := run.Step(1e-2, ps); err != nil {
			t.Fatal(err)
		}
	}
	// A second optimizer takes the first one's state (copied), then both step once more.
	copied := map[string]optim.Vec{}
	for k, v := range run.State() {
		copied[k] = optim.Vec{F32: slices.Clone(v.F32), F64: slices.Clone(v.F64)}
	}
	resumed := optim.NewAdamW(cfg)
	if err := resumed.SetState(run.Steps(), copied); err != nil {
		t.Fatal(err)
	}
	qs := params()
	for i := range qs {
		qs[i].Value = optim.Vec{F32: slices.Clone(ps[i].Value.F32), F64: slices.Clone(ps[i].Value.F64)}
	}
	if err := run.Step(1e-2, ps); err != nil {
		t.Fatal(err)
	}
	if err := resumed.Step(1e-2, qs); err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if !slices.Equal(ps[i].Value.F32, qs[i].Value.F32) || !slices.Equal(ps[i].Value.F64, qs[i].Value.F64) {
			t.Errorf("%s: resumed %v, uninterrupted %v", ps[i].Name, qs[i].Value, ps[i].Value)
		}
	}
}

func TestAdamWSetStateRejects(t *testing.T) {
	v := func(n int) optim.Vec { return optim.Vec{F32: make([]float32, n)} }
	for _, tc := range []struct {
		name  string
		state map[string]optim.Vec
		want  string
	}{
		{"unpaired first", map[string]optim.Vec{"a.exp_avg": v(2)}, `no "a.exp_avg_sq"`},
		{"unpaired second", map[string]optim.Vec{"a.exp_avg_sq": v(2)}, `no "a.exp_avg"`},
		{"lengths", map[string]optim.Vec{"a.exp_avg": v(2), "a.exp_avg_sq": v(3)}, "different lengths"},
		{"unknown key", map[string]optim.Vec{"a.momentum": v(2)}, `"a.momentum"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := optim.NewAdamW(optim.AdamWConfig{Beta1: 0.9, Beta2: 0.9, Eps: 1e-8}).SetState(1, tc.state)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %s", err, tc.want)
			}
		})
	}
	// Moments restored for another shape are refused at the first step.
	o := optim.NewAdamW(optim.AdamWConfig{Beta1: 0.9, Beta2: 0.9, Eps: 1e-8})
	if err := o.SetState(1, map[string]optim.Vec{"a.exp_avg": v(2), "a.exp_avg_sq": v(2)}); err != nil {
		t.Fatal(err)
	}
	err := o.Step(1e-3, []optim.Param{{Name: "a", Value: v(3), Grad: v(3)}})
	if err == nil || !strings.Contains(err.Error(), "moments of 2") {
		t.Fatalf("got %v", err)
	}
}
