package main

import (
	"time"

	"github.com/torusml/torus/device"
	"github.com/torusml/torus/model"
)

// matmulPeak measures the Go backend's float32 matmul rate (GFLOP/s).
func matmulPeak() (float64, error) {
	backend, err := device.CPU()
	if err != nil {
		return 0, err
	}
	return model.MatmulGFLOPs(backend.Compute, 2*time.Second)
}
