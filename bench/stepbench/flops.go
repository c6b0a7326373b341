package main

import (
	"time"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/trainer"
)

// matmulPeak measures the Go backend's float32 matmul rate (GFLOP/s).
func matmulPeak() (float64, error) {
	backend, err := trainer.NewBackend("go")
	if err != nil {
		return 0, err
	}
	return model.MatmulGFLOPs(backend, 2*time.Second)
}
