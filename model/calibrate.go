package model

import (
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/host"
)

// MatmulGFLOPs times float32 2048x2048 matmuls on backend for about d (at least
// two, after one untimed run that compiles) and returns the best rate in
// GFLOP/s: the machine's peak for the work a step is mostly made of.
func MatmulGFLOPs(backend compute.Backend, d time.Duration) (float64, error) {
	const n = 2048
	exec, err := graph.NewExec(backend, func(a, b *graph.Node) *graph.Node { return graph.MatMul(a, b) })
	if err != nil {
		return 0, err
	}
	a := tensors.FromShape(shapes.Make(dtypes.Float32, n, n))
	b := tensors.FromShape(shapes.Make(dtypes.Float32, n, n))
	host.Fill(a, 0.5)
	host.Fill(b, 0.25)
	best := 0.0
	for start, i := time.Now(), 0; i < 3 || time.Since(start) < d; i++ {
		t0 := time.Now()
		out, err := exec.Exec(a, b)
		if err != nil {
			return 0, err
		}
		secs := time.Since(t0).Seconds()
		out[0].FinalizeAll()
		if i > 0 {
			best = max(best, 2*n*n*n/secs/1e9)
		}
	}
	return best, nil
}
