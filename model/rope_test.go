package model_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// ropeConfig is a one-layer model with head dimension hd, rope_theta 10000 and
// max_position_embeddings 16, scaled by s.
func ropeConfig(hd int, s model.RopeScaling) model.Config {
	return model.Config{Vocab: 8, Dim: 2 * hd, Layers: 1, Heads: 2, KVHeads: 1, MLPDim: 4,
		RopeTheta: 10000, NormEps: 1e-5, MaxPositions: 16, RopeScaling: s}
}

// TestRopeFrequencies checks each type against frequencies worked out by hand:
// with rope_theta 10000 the plain frequencies are 10^(-8j/dim): [1, 0.01] for
// dim 4 and [1, 0.1, 0.01, 0.001] for dim 8.
func TestRopeFrequencies(t *testing.T) {
	// llama3, original 1000, low 1, high 4: wavelengths 2π/f are 6.28, 62.8 (< 250:
	// kept), 628 (between: smoothed) and 6283 (> 1000: / factor 8).
	smooth := (1000*0.01/(2*math.Pi) - 1) / (4 - 1)
	// yarn, original 1000: beta_fast 32 turns at dimension 8 ln(1000/(64π)) /
	// (2 ln 10000) = 0.70 (floor 0), beta_slow 1 at 8 ln(1000/(2π)) / (2 ln 10000)
	// = 2.20 (ceil 3): frequency j is interpolated by j/3.
	yarn := func(j int, f float64) float64 {
		p := math.Pow(10, -float64(j))
		return p*(1-float64(j)/3) + p/f*float64(j)/3
	}
	for _, c := range []struct {
		name   string
		hd     int
		s      model.RopeScaling
		seqLen int
		want   []float64
		att    float64
	}{
		{"plain", 4, model.RopeScaling{}, 100, []float64{1, 0.01}, 1},
		{"none", 4, model.RopeScaling{Type: "none", Factor: 8}, 100, []float64{1, 0.01}, 1},
		{"linear", 4, model.RopeScaling{Type: "linear", Factor: 4}, 100, []float64{0.25, 0.0025}, 1},
		// dynamic, original 16 (max_positions), factor 2: at 32 tokens rope_theta
		// becomes 10000 (2*32/16 - 1)^(4/2) = 90000, so [1, 1/300].
		{"dynamic longer", 4, model.RopeScaling{Type: "dynamic", Factor: 2}, 32, []float64{1, 1.0 / 300}, 1},
		{"dynamic shorter", 4, model.RopeScaling{Type: "dynamic", Factor: 2}, 10, []float64{1, 0.01}, 1},
		{"dynamic at original", 4, model.RopeScaling{Type: "dynamic", Factor: 2}, 16, []float64{1, 0.01}, 1},
		// original 8 instead of max_positions: at 32 tokens (2*32/8 - 1)^2 = 49, so
		// rope_theta 490000 and [1, 1/700].
		{"dynamic original 8", 4, model.RopeScaling{Type: "dynamic", Factor: 2, OriginalMaxPositions: 8}, 32,
			[]float64{1, 1.0 / 700}, 1},
		{"llama3", 8, model.RopeScaling{Type: "llama3", Factor: 8, OriginalMaxPositions: 1000, LowFreqFactor: 1, HighFreqFactor: 4}, 0,
			[]float64{1, 0.1, (1-smooth)*0.01/8 + smooth*0.01, 0.001 / 8}, 1},
		{"yarn", 8, model.RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPositions: 1000, BetaFast: 32, BetaSlow: 1}, 0,
			[]float64{yarn(0, 4), yarn(1, 4), yarn(2, 4), yarn(3, 4)}, 0.1*math.Log(4) + 1},
		{"yarn default betas, attention factor", 8, model.RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPositions: 1000, AttentionFactor: 1.5}, 0,
			[]float64{yarn(0, 4), yarn(1, 4), yarn(2, 4), yarn(3, 4)}, 1.5},
		// original 10: beta_slow turns at 8 ln(10/(2π)) / (2 ln 10000) = 0.20 (ceil
		// 1) and beta_fast below 0 (clamped): everything past dimension 0 interpolated.
		{"yarn short original", 8, model.RopeScaling{Type: "yarn", Factor: 2, OriginalMaxPositions: 10}, 0,
			[]float64{1, 0.05, 0.005, 0.0005}, 0.1*math.Log(2) + 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ropeConfig(c.hd, c.s)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got, att := model.RopeFrequencies(cfg, c.seqLen)
			if len(got) != len(c.want) {
				t.Fatalf("%d frequencies, want %d", len(got), len(c.want))
			}
			for j := range got {
				if math.Abs(got[j]-c.want[j]) > 1e-14*c.want[j] {
					t.Errorf("frequency %d: %.17g, want %.17g", j, got[j], c.want[j])
				}
			}
			if math.Abs(att-c.att) > 1e-15 {
				t.Errorf("attention factor %.17g, want %.17g", att, c.att)
			}
		})
	}
}

// TestRopeTablesFor: cos and sin are the frequencies' rotations times the
// attention factor in the Hugging Face layout, and do not depend on how the
// sequence is split when the whole sequence's length is passed.
func TestRopeTablesFor(t *testing.T) {
	yarn := ropeConfig(8, model.RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPositions: 1000})
	dynamic := ropeConfig(8, model.RopeScaling{Type: "dynamic", Factor: 3})
	pos := []int32{0, 1, 2, 40, 3, 0, 17}
	for _, c := range []model.Config{yarn, dynamic} {
		t.Run(c.RopeScaling.Type, func(t *testing.T) {
			const seqLen = 64
			f, att := model.RopeFrequencies(c, seqLen)
			cos, sin := model.RopeTablesFor(c, dtypes.Float64, pos, seqLen)
			if d := cos.Shape().Dimensions; !slices.Equal(d, []int{len(pos), 8}) {
				t.Fatalf("cos %v, want [%d 8]", d, len(pos))
			}
			cv, sv := host.ToFloat64(cos), host.ToFloat64(sin)
			for i, p := range pos {
				for j := range 8 {
					a := float64(p) * f[j%4]
					if cv[i*8+j] != math.Cos(a)*att || sv[i*8+j] != math.Sin(a)*att {
						t.Fatalf("position %d, column %d: cos %v sin %v, want %v %v", p, j, cv[i*8+j], sv[i*8+j], math.Cos(a)*att, math.Sin(a)*att)
					}
				}
			}
			// Two workers' halves, each told the whole length, give the same rows.
			c1, _ := model.RopeTablesFor(c, dtypes.Float64, pos[:3], seqLen)
			c2, _ := model.RopeTablesFor(c, dtypes.Float64, pos[3:], seqLen)
			if !slices.Equal(append(host.ToFloat64(c1), host.ToFloat64(c2)...), cv) {
				t.Error("split tables differ from the whole sequence's")
			}
			// RopeTables takes the length from the positions: 41 here.
			c3, _ := model.RopeTables(c, dtypes.Float64, pos)
			c4, _ := model.RopeTablesFor(c, dtypes.Float64, pos, 41)
			if !slices.Equal(host.ToFloat64(c3), host.ToFloat64(c4)) {
				t.Error("RopeTables differs from RopeTablesFor with max(pos)+1")
			}
		})
	}
	// dynamic's frequencies grow with the length past the original 16, so
	// a worker told only its own share would differ.
	a, _ := model.RopeTablesFor(dynamic, dtypes.Float64, pos, 64)
	b, _ := model.RopeTablesFor(dynamic, dtypes.Float64, pos, 41)
	if slices.Equal(host.ToFloat64(a), host.ToFloat64(b)) {
		t.Error("dynamic tables do not depend on the sequence length")
	}
}

func TestRopeScalingValidate(t *testing.T) {
	for _, c := range []struct {
		s    model.RopeScaling
		max  int
		want string // "" for valid
	}{
		{model.RopeScaling{}, 0, ""},
		{model.RopeScaling{Type: "none", Factor: -1}, 0, ""},
		{model.RopeScaling{Type: "linear", Factor: 2}, 0, ""},
		{model.RopeScaling{Type: "foo", Factor: 2}, 16, `model: rope_scaling type "foo" not supported (linear, dynamic, yarn, llama3)`},
		{model.RopeScaling{Type: "longrope", Factor: 2}, 16, `type "longrope" not supported`},
		{model.RopeScaling{Type: "linear", Factor: 0.5}, 16, "rope_scaling factor must be >= 1"},
		{model.RopeScaling{Type: "linear"}, 16, "rope_scaling factor must be >= 1"},
		{model.RopeScaling{Type: "yarn", Factor: math.NaN()}, 16, "rope_scaling factor must be >= 1"},
		{model.RopeScaling{Type: "linear", Factor: math.Inf(1)}, 16, "rope_scaling factor must be >= 1"},
		{model.RopeScaling{Type: "dynamic", Factor: 2, OriginalMaxPositions: -1}, 16, "original_max_position_embeddings must be >= 0"},
		{model.RopeScaling{Type: "dynamic", Factor: 2}, 0, "dynamic needs original_max_position_embeddings (or max_positions) >= 1"},
		{model.RopeScaling{Type: "dynamic", Factor: 2, OriginalMaxPositions: 8}, 0, ""},
		{model.RopeScaling{Type: "llama3", Factor: 8, HighFreqFactor: 4}, 16, "low_freq_factor must be > 0"},
		{model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 4, HighFreqFactor: 4}, 16, "high_freq_factor must be > low_freq_factor (4), got 4"},
		{model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4}, 16, ""},
		{model.RopeScaling{Type: "yarn", Factor: 8, BetaFast: 1, BetaSlow: 2}, 16, "beta_fast (1) must be > beta_slow (2)"},
		{model.RopeScaling{Type: "yarn", Factor: 8, BetaSlow: 40}, 16, "beta_fast (32) must be > beta_slow (40)"},
		{model.RopeScaling{Type: "yarn", Factor: 8, BetaSlow: -1}, 16, "beta_slow must be >= 0"},
		{model.RopeScaling{Type: "yarn", Factor: 8, AttentionFactor: -1}, 16, "attention_factor must be >= 0"},
		{model.RopeScaling{Type: "yarn", Factor: 8}, 16, ""},
	} {
		cfg := ropeConfig(4, c.s)
		cfg.MaxPositions = c.max
		err := cfg.Validate()
		if c.want == "" && err != nil {
			t.Errorf("%+v: %v", c.s, err)
		} else if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: error %v, want one containing %q", c.s, err, c.want)
		}
	}
	// dynamic raises rope_theta to the power dim/(dim-2): not for dim 2.
	cfg := model.Config{Vocab: 8, Dim: 4, Layers: 1, Heads: 2, KVHeads: 1, MLPDim: 4, RopeTheta: 10000, NormEps: 1e-5,
		MaxPositions: 16, RopeScaling: model.RopeScaling{Type: "dynamic", Factor: 2}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "head dimension > 2") {
		t.Errorf("dynamic with head dimension 2: error %v", err)
	}
}
