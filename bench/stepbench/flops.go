package main

import (
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

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

// matmulPeak measures the Go backend's float32 matmul rate (GFLOP/s), best of
// several runs of a 2048^3 product.
func matmulPeak() (float64, error) {
	backend, err := trainer.NewBackend("go")
	if err != nil {
		return 0, err
	}
	const n = 2048
	exec, err := NewExec(backend, func(a, b *Node) *Node { return MatMul(a, b) })
	if err != nil {
		return 0, err
	}
	a := tensors.FromShape(shapes.Make(dtypes.Float32, n, n))
	b := tensors.FromShape(shapes.Make(dtypes.Float32, n, n))
	model.Fill(a, 0.5)
	model.Fill(b, 0.25)
	best := 0.0
	for range 6 {
		start := time.Now()
		out, err := exec.Exec(a, b)
		if err != nil {
			return 0, err
		}
		secs := time.Since(start).Seconds()
		out[0].FinalizeAll()
		best = max(best, 2*n*n*n/secs/1e9)
	}
	return best, nil
}
