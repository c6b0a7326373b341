package main

import (
	"time"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/trainer"
)

// StepFLOPs is the useful work of one training step on one sequence: three times
// the forward (forward, and backward at twice the forward), recompute not counted,
// causal attention counted at its half (what any exact implementation must do).
func StepFLOPs(c model.Config, L int) float64 {
	d, hd, f := float64(c.Dim), float64(c.HeadDimension()), float64(c.MLPDim)
	h, kv := float64(c.Heads), float64(c.KVHeads)
	perTokenLayer := 2 * (d*h*hd + 2*d*kv*hd + h*hd*d + 3*d*f) // projections and MLP
	attn := 2 * 2 * h * hd * float64(L) / 2                    // QK^T and PV, causal half, per token
	perToken := float64(c.Layers)*(perTokenLayer+attn) + 2*d*float64(c.Vocab)
	return 3 * perToken * float64(L)
}

// matmulPeak measures the Go backend's float32 matmul rate (GFLOP/s).
func matmulPeak() (float64, error) {
	backend, err := trainer.NewBackend("go")
	if err != nil {
		return 0, err
	}
	return model.MatmulGFLOPs(backend, 2*time.Second)
}
