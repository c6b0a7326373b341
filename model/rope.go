package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/host"
)

// Rotary embedding and its scaling for longer contexts, as Hugging Face's
// rope_scaling (transformers' modeling_rope_utils.py) defines it. Everything here
// runs on the host in float64; transformers computes the same formulas in float32.

// RopeScalingTypes are the rope_scaling types torus implements, as Hugging Face names them.
var RopeScalingTypes = []string{"linear", "dynamic", "yarn", "llama3"}

// RopeScaling is Hugging Face's rope_scaling: how RoPE's frequencies are stretched
// so that a model trained at OriginalMaxPositions tokens reads Factor times more.
// The zero value (Type "" or "none") leaves RoPE as trained.
type RopeScaling struct {
	// Type: linear (position interpolation: every frequency / Factor), dynamic
	// (NTK: rope_theta grows with the sequence length once it passes
	// OriginalMaxPositions), yarn (NTK-by-parts: only the low frequencies are
	// interpolated, and cos and sin are scaled by AttentionFactor), llama3 (Llama
	// 3.1: low frequencies / Factor, high ones kept, a smooth ramp between).
	Type   string
	Factor float64 // factor: how many times longer the context gets, >= 1
	// OriginalMaxPositions is the context the model was trained at
	// (original_max_position_embeddings; dynamic: max_position_embeddings).
	// 0: Config.MaxPositions.
	OriginalMaxPositions int
	LowFreqFactor        float64 // llama3: wavelengths above original/low are divided by Factor
	HighFreqFactor       float64 // llama3: wavelengths below original/high are kept
	BetaFast             float64 // yarn: rotations at which interpolation ends (0: 32)
	BetaSlow             float64 // yarn: rotations at which interpolation is full (0: 1)
	AttentionFactor      float64 // yarn: cos and sin multiplier (0: 0.1*ln(Factor)+1)
}

// Enabled reports whether s changes RoPE at all.
func (s RopeScaling) Enabled() bool { return s.Type != "" && s.Type != "none" }

// ropeOriginalMax is the context the scaling is relative to.
func (c Config) ropeOriginalMax() int {
	if c.RopeScaling.OriginalMaxPositions > 0 {
		return c.RopeScaling.OriginalMaxPositions
	}
	return c.MaxPositions
}

// yarnBetas are beta_fast and beta_slow with transformers' defaults for zero.
func (s RopeScaling) yarnBetas() (fast, slow float64) {
	fast, slow = s.BetaFast, s.BetaSlow
	if fast == 0 {
		fast = 32
	}
	if slow == 0 {
		slow = 1
	}
	return fast, slow
}

// yarnAttentionFactor is AttentionFactor, or yarn's default 0.1*ln(Factor)+1.
func (s RopeScaling) yarnAttentionFactor() float64 {
	if s.AttentionFactor > 0 {
		return s.AttentionFactor
	}
	return yarnMscale(s.Factor, 1)
}

// yarnMscale is YaRN's magnitude correction for a context Factor times longer.
func yarnMscale(factor, mscale float64) float64 {
	if factor <= 1 {
		return 1
	}
	return 0.1*mscale*math.Log(factor) + 1
}

// validateRopeScaling reports the first problem of c's rope_scaling, naming the key.
func (c Config) validateRopeScaling() error {
	s := c.RopeScaling
	if !s.Enabled() {
		return nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("model: rope_scaling "+format, args...)
	}
	known := false
	for _, t := range RopeScalingTypes {
		known = known || s.Type == t
	}
	switch {
	case !known:
		return bad("type %q not supported (%s)", s.Type, strings.Join(RopeScalingTypes, ", "))
	case !(s.Factor >= 1) || math.IsInf(s.Factor, 0):
		return bad("factor must be >= 1 (how many times longer the context gets), got %v", s.Factor)
	case s.OriginalMaxPositions < 0:
		return bad("original_max_position_embeddings must be >= 0 (0: max_positions), got %d", s.OriginalMaxPositions)
	case s.Type != "linear" && c.ropeOriginalMax() < 1:
		return bad("%s needs original_max_position_embeddings (or max_positions) >= 1", s.Type)
	}
	switch s.Type {
	case "dynamic":
		if c.HeadDimension() <= 2 {
			return bad("dynamic needs a head dimension > 2 (rope_theta grows as a power dim/(dim-2)), got %d", c.HeadDimension())
		}
	case "llama3":
		if !(s.LowFreqFactor > 0) || math.IsInf(s.LowFreqFactor, 0) {
			return bad("low_freq_factor must be > 0, got %v", s.LowFreqFactor)
		}
		if !(s.HighFreqFactor > s.LowFreqFactor) || math.IsInf(s.HighFreqFactor, 0) {
			return bad("high_freq_factor must be > low_freq_factor (%v), got %v", s.LowFreqFactor, s.HighFreqFactor)
		}
	case "yarn":
		fast, slow := s.yarnBetas()
		switch {
		case !(s.BetaSlow >= 0) || math.IsInf(slow, 0):
			return bad("beta_slow must be >= 0 (0: 1), got %v", s.BetaSlow)
		case !(fast > slow) || math.IsInf(fast, 0):
			return bad("beta_fast (%v) must be > beta_slow (%v)", fast, slow)
		case !(s.AttentionFactor >= 0) || math.IsInf(s.AttentionFactor, 0):
			return bad("attention_factor must be >= 0 (0: 0.1*ln(factor)+1), got %v", s.AttentionFactor)
		case !(c.RopeTheta > 1):
			return bad("yarn needs rope_theta > 1, got %v", c.RopeTheta)
		}
	}
	return nil
}

// RopeFrequencies are the Dh/2 inverse frequencies of c's rotary embedding and
// the factor cos and sin are multiplied by, for a sequence of seqLen tokens
// (only dynamic depends on it). It follows transformers' _compute_*_parameters
// for c.RopeScaling.Type, in float64. c must be valid.
func RopeFrequencies(c Config, seqLen int) (invFreq []float64, attention float64) {
	hd := c.HeadDimension()
	dim := float64(hd)
	// plain: theta^(-2j/dim), as _compute_default_rope_parameters.
	plain := func(theta float64) []float64 {
		f := make([]float64, hd/2)
		for j := range f {
			f[j] = 1 / math.Pow(theta, float64(2*j)/dim)
		}
		return f
	}
	s := c.RopeScaling
	orig := float64(c.ropeOriginalMax())
	switch s.Type {
	case "linear":
		f := plain(c.RopeTheta)
		for j := range f {
			f[j] /= s.Factor
		}
		return f, 1
	case "dynamic":
		// rope_theta grows so that the longest wavelength stretches with the
		// sequence; below the original context nothing changes.
		l := max(float64(seqLen), orig)
		theta := c.RopeTheta * math.Pow(s.Factor*l/orig-(s.Factor-1), dim/(dim-2))
		return plain(theta), 1
	case "llama3":
		f := plain(c.RopeTheta)
		lowWave, highWave := orig/s.LowFreqFactor, orig/s.HighFreqFactor
		for j, inv := range f {
			switch wave := 2 * math.Pi / inv; {
			case wave < highWave: // high frequency: kept
			case wave > lowWave: // low frequency: interpolated
				f[j] = inv / s.Factor
			default:
				smooth := (orig/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				f[j] = (1-smooth)*inv/s.Factor + smooth*inv
			}
		}
		return f, 1
	case "yarn":
		return yarnFrequencies(c, orig), s.yarnAttentionFactor()
	}
	return plain(c.RopeTheta), 1
}

// yarnFrequencies: dimensions that turn fewer than beta_slow times over the
// original context are interpolated (/ factor), those that turn more than
// beta_fast times are kept, with a linear ramp between (truncated to whole
// dimensions, as transformers' default truncate=True).
func yarnFrequencies(c Config, orig float64) []float64 {
	s := c.RopeScaling
	hd := c.HeadDimension()
	dim := float64(hd)
	fast, slow := s.yarnBetas()
	// correctionDim: the dimension whose frequency makes `rotations` turns over orig.
	correctionDim := func(rotations float64) float64 {
		return dim * math.Log(orig/(rotations*2*math.Pi)) / (2 * math.Log(c.RopeTheta))
	}
	low := max(math.Floor(correctionDim(fast)), 0)
	high := min(math.Ceil(correctionDim(slow)), dim-1)
	if low == high {
		high += 0.001 // as transformers: no zero-width ramp
	}
	f := make([]float64, hd/2)
	for j := range f {
		posFreq := math.Pow(c.RopeTheta, float64(2*j)/dim)
		extrapolation, interpolation := 1/posFreq, 1/(s.Factor*posFreq)
		keep := 1 - min(max((float64(j)-low)/(high-low), 0), 1) // 1: extrapolate, 0: interpolate
		f[j] = interpolation*(1-keep) + extrapolation*keep
	}
	return f
}

// RopeTables is RopeTablesFor with the sequence length max(pos)+1, as
// transformers takes it from position_ids.
func RopeTables(c Config, dtype dtypes.DType, pos []int32) (cos, sin *tensors.Tensor) {
	n := 0
	for _, p := range pos {
		n = max(n, int(p)+1)
	}
	return RopeTablesFor(c, dtype, pos, n)
}

// RopeTablesFor: cos and sin [L, Dh] for the given positions, in the Hugging Face
// layout (the Dh/2 frequencies repeated twice), computed in float64 with c's
// rope_scaling. seqLen is the length of the whole sequence pos belongs to (only
// dynamic scaling reads it): pass the same value on every worker so that the
// tables do not depend on how the sequence is split.
func RopeTablesFor(c Config, dtype dtypes.DType, pos []int32, seqLen int) (cos, sin *tensors.Tensor) {
	invFreq, scale := RopeFrequencies(c, seqLen)
	hd := c.HeadDimension()
	half := hd / 2
	cv := make([]float64, len(pos)*hd)
	sv := make([]float64, len(pos)*hd)
	for i, p := range pos {
		for j, f := range invFreq {
			a := float64(p) * f
			c, s := math.Cos(a)*scale, math.Sin(a)*scale
			cv[i*hd+j], cv[i*hd+j+half] = c, c
			sv[i*hd+j], sv[i*hd+j+half] = s, s
		}
	}
	return host.FromFloat64(dtype, cv, len(pos), hd), host.FromFloat64(dtype, sv, len(pos), hd)
}
