package model

// StepFLOPs is the useful work of one training step on one sequence of seqLen
// tokens, FLOPs (2 per multiply-add): three times the forward (the backward is
// twice the forward), recompute not counted, causal attention counted at its
// half (what any exact implementation must do). This is the numerator of model
// FLOPs utilization (MFU), as in PaLM's appendix B:
//
//	per token and layer: 2 (D·H·Dh + 2 D·KH·Dh + H·Dh·D + 3 D·F)   q, k, v, o and the SwiGLU MLP
//	                     + 2·2·H·Dh·seqLen/2                        QK^T and PV over half the keys
//	per token:           Layers × the above + 2 D·V                 and the head
//	per step:            3 × seqLen × per token
//
// The embedding lookup is not a matmul and is not counted.
func StepFLOPs(c Config, seqLen int) float64 {
	d, hd, f := float64(c.Dim), float64(c.HeadDimension()), float64(c.MLPDim)
	h, kv, l := float64(c.Heads), float64(c.KVHeads), float64(seqLen)
	perTokenLayer := 2 * (d*h*hd + 2*d*kv*hd + h*hd*d + 3*d*f) // projections and MLP
	attn := 2 * 2 * h * hd * l / 2                             // QK^T and PV, causal half
	perToken := float64(c.Layers)*(perTokenLayer+attn) + 2*d*float64(c.Vocab)
	return 3 * perToken * l
}
