package plan

import "math"

// StepFLOPs is the matmul work one worker executes per optimizer step, FLOPs
// as executed (2 per multiply-add), recompute included:
//
//	per layer and micro-batch, with P = 2 Lw (D·H·Dh + 2 D·KH·Dh + H·Dh·D + 3 D·F)
//	the projections and MLP, A = 4 Lw H·Dh K the attention (K keys per query:
//	half the sequence under the causal mask, plus half a key block at the
//	diagonal), and E = 2 Lw D V the head:
//
//	forward P + A; backward 2P + 2.5A (the scores are recomputed in the
//	attention's backward, as FlashAttention's); recompute P, and A again with
//	recompute: layer; the head runs once, forward and backward, 3E.
func StepFLOPs(c Config) float64 {
	total, _ := stepFLOPs(c)
	return total
}

// stepFLOPs is StepFLOPs and the part of it in blockwise attention.
func stepFLOPs(c Config) (total, attention float64) {
	m := c.Model
	s := geometry(c)
	d, f, v := s.d, s.f, s.v
	proj := 2 * s.lw * (d*s.aq + 2*d*s.akv + s.aq*d + 3*d*f)
	keys := math.Min(float64(c.SeqLen), float64(c.SeqLen)/2+float64(c.AttnBlockK)/2)
	attn := 4 * s.lw * s.aq * keys
	head := 2 * s.lw * d * v
	attnPasses := 1 + 2.5
	if c.Recompute == "layer" {
		attnPasses++
	}
	ga, layers := float64(c.GradAccum), float64(m.Layers)
	attention = layers * attn * attnPasses * ga
	return (layers*proj*(1+2+1)+3*head)*ga + attention, attention
}

// ModelFLOPs is the useful work of one step per worker (forward and backward,
// no recompute: 3x the forward), for MFU.
func ModelFLOPs(c Config) float64 {
	m := c.Model
	s := geometry(c)
	proj := 2 * s.lw * (s.d*s.aq + 2*s.d*s.akv + s.aq*s.d + 3*s.d*s.f)
	attn := 4 * s.lw * s.aq * float64(c.SeqLen) / 2
	return 3 * (float64(m.Layers)*(proj+attn) + 2*s.lw*s.d*s.v) * float64(c.GradAccum)
}
