package model

// config.json's rope_scaling (transformers v4) and rope_parameters (v5), read into
// Config.RopeScaling and written back as transformers reads them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// hfRopeIn is one rope_scaling or rope_parameters object; pointers tell missing from zero.
type hfRopeIn struct {
	RopeType             *string  `json:"rope_type"`
	Type                 *string  `json:"type"` // the older spelling of rope_type
	RopeTheta            *float64 `json:"rope_theta"`
	Factor               *float64 `json:"factor"`
	OriginalMaxPositions *float64 `json:"original_max_position_embeddings"`
	LowFreqFactor        *float64 `json:"low_freq_factor"`
	HighFreqFactor       *float64 `json:"high_freq_factor"`
	BetaFast             *float64 `json:"beta_fast"`
	BetaSlow             *float64 `json:"beta_slow"`
	AttentionFactor      *float64 `json:"attention_factor"`
	Mscale               *float64 `json:"mscale"`
	MscaleAllDim         *float64 `json:"mscale_all_dim"`
	Truncate             *bool    `json:"truncate"`
	PartialRotaryFactor  *float64 `json:"partial_rotary_factor"`
}

// readHFRope reads config.json's key (rope_scaling or rope_parameters): the
// scaling (zero for null or type "default") and the rope_theta it carries (0:
// none). maxPositions is config.json's max_position_embeddings, from which yarn
// derives a missing factor as transformers v5 does. Errors name the key.
func readHFRope(key string, raw json.RawMessage, maxPositions int) (RopeScaling, float64, error) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return RopeScaling{}, 0, nil
	}
	var in hfRopeIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return RopeScaling{}, 0, fmt.Errorf("%s: %w", key, err)
	}
	var theta float64
	if in.RopeTheta != nil {
		theta = *in.RopeTheta
	}
	// transformers takes rope_type, then type, and defaults to "default".
	typ := "default"
	if in.RopeType != nil {
		typ = *in.RopeType
	} else if in.Type != nil {
		typ = *in.Type
	}
	if typ == "default" {
		return RopeScaling{}, theta, nil
	}
	fail := func(format string, args ...any) (RopeScaling, float64, error) {
		return RopeScaling{}, 0, fmt.Errorf("%s "+format, append([]any{key}, args...)...)
	}
	s := RopeScaling{Type: typ}
	switch typ {
	case "linear", "dynamic", "yarn", "llama3":
	default:
		return fail("type %q not supported (%s)", typ, strings.Join(RopeScalingTypes, ", "))
	}
	if p := in.PartialRotaryFactor; p != nil && *p != 1 {
		return fail("partial_rotary_factor %v not supported (1: every dimension rotates)", *p)
	}
	// Only yarn and llama3 read original_max_position_embeddings from here:
	// transformers' dynamic takes max_position_embeddings, linear neither.
	if o := in.OriginalMaxPositions; o != nil && (typ == "yarn" || typ == "llama3") {
		if *o < 1 || *o != math.Trunc(*o) || *o > math.MaxInt32 {
			return fail("original_max_position_embeddings must be a whole number >= 1, got %v", *o)
		}
		s.OriginalMaxPositions = int(*o)
	}
	switch {
	case in.Factor != nil:
		s.Factor = *in.Factor
	case typ == "yarn" && s.OriginalMaxPositions > 0:
		s.Factor = float64(maxPositions) / float64(s.OriginalMaxPositions)
	default:
		return fail("factor missing for type %s", typ)
	}
	switch typ {
	case "llama3":
		if in.LowFreqFactor == nil || in.HighFreqFactor == nil {
			return fail("low_freq_factor and high_freq_factor are required for type llama3")
		}
		s.LowFreqFactor, s.HighFreqFactor = *in.LowFreqFactor, *in.HighFreqFactor
	case "yarn":
		if in.Truncate != nil && !*in.Truncate {
			return fail("truncate false not supported (the ramp spans whole dimensions)")
		}
		// transformers reads beta_fast or 32, beta_slow or 1: zero and null are the default.
		if in.BetaFast != nil {
			s.BetaFast = *in.BetaFast
		}
		if in.BetaSlow != nil {
			s.BetaSlow = *in.BetaSlow
		}
		switch a := in.AttentionFactor; {
		case a != nil && !(*a > 0):
			return fail("attention_factor must be > 0, got %v", *a)
		case a != nil:
			s.AttentionFactor = *a
		case in.Mscale != nil && *in.Mscale != 0 && in.MscaleAllDim != nil && *in.MscaleAllDim != 0:
			// DeepSeek's spelling of the attention factor.
			s.AttentionFactor = yarnMscale(s.Factor, *in.Mscale) / yarnMscale(s.Factor, *in.MscaleAllDim)
		}
	}
	return s, theta, nil
}

// hfRopeScaling is c's rope_scaling as config.json states it: nil (null) when
// off, else rope_type, factor and the type's own keys, with defaults resolved.
func hfRopeScaling(c Config) map[string]any {
	s := c.RopeScaling
	if !s.Enabled() {
		return nil
	}
	m := map[string]any{"rope_type": s.Type, "factor": pyFloat(s.Factor)}
	switch s.Type {
	case "llama3":
		m["original_max_position_embeddings"] = c.ropeOriginalMax()
		m["low_freq_factor"] = pyFloat(s.LowFreqFactor)
		m["high_freq_factor"] = pyFloat(s.HighFreqFactor)
	case "yarn":
		fast, slow := s.yarnBetas()
		m["original_max_position_embeddings"] = c.ropeOriginalMax()
		m["beta_fast"] = pyFloat(fast)
		m["beta_slow"] = pyFloat(slow)
		if s.AttentionFactor > 0 {
			m["attention_factor"] = pyFloat(s.AttentionFactor)
		}
	}
	return m
}

// hfMaxPositions is config.json's max_position_embeddings: for dynamic scaling
// the context it grows from (transformers reads no other); for yarn the
// stretched context, factor x original, when that is a whole number (some
// transformers 4.x releases take yarn's factor as max_position_embeddings /
// original_max_position_embeddings); else MaxPositions, or LlamaConfig's 2048
// when unknown.
func hfMaxPositions(c Config) int {
	n := c.MaxPositions
	switch c.RopeScaling.Type {
	case "dynamic":
		n = c.ropeOriginalMax()
	case "yarn":
		if m := c.RopeScaling.Factor * float64(c.ropeOriginalMax()); m == math.Trunc(m) && m <= math.MaxInt32 {
			n = int(m)
		}
	}
	if n <= 0 {
		return 2048
	}
	return n
}
