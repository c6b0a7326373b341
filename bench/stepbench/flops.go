package main

import (
	"fmt"
	"os"
	"time"

	"github.com/torusml/torus/device"
	"github.com/torusml/torus/model"
)

// matmulPeak measures the float32 matmul rate (GFLOP/s) of --backend.
func matmulPeak() (float64, error) {
	backend, err := device.Open(bench.backend, device.Options{})
	if err != nil {
		return 0, err
	}
	return model.MatmulGFLOPs(backend.Compute, 2*time.Second)
}

// peakFLOPs is the FLOP/s a step's MFU is measured against, where it comes
// from, and the GPU's name (NVML's) on a GPU. On cuda with NVML and a GPU in
// device's table it is the datasheet's dense peak for the step's matmuls: bf16
// for --dtype bfloat16, else fp32 (the trainer opens its backend with TF32
// off, so float32 matmuls run on the CUDA cores). Otherwise it is measured: a
// float32 matmul on the backend in use. 0 when neither can be had.
func peakFLOPs(b *device.Backend, dtype string) (peak float64, from, gpuName string) {
	if b.Kind == "cuda" {
		format := "fp32"
		if dtype == "bfloat16" {
			format = "bf16"
		}
		idx, err := device.VisibleGPU(0, os.Getenv("CUDA_VISIBLE_DEVICES"))
		var gpus []device.GPU
		if err == nil {
			gpus, err = device.GPUs()
		}
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "stepbench: no datasheet peak (%v): measuring a matmul\n", err)
		case idx >= len(gpus):
			fmt.Fprintf(os.Stderr, "stepbench: NVML sees no GPU %d: measuring a matmul\n", idx)
		default:
			gpuName = gpus[idx].Name
			if p, ok := device.PeakFLOPs(gpuName, format); ok {
				return p, fmt.Sprintf("%s, %s, datasheet", gpuName, format), gpuName
			}
			fmt.Fprintf(os.Stderr, "stepbench: %s is not in device's peak table: measuring a matmul\n", gpuName)
		}
	}
	gflops, err := model.MatmulGFLOPs(b.Compute, 2*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stepbench: matmul peak: %v\n", err)
		return 0, "unknown", gpuName
	}
	return gflops * 1e9, fmt.Sprintf("float32 2048^3 matmul on backend %s, measured", b.Kind), gpuName
}

// modelJSON is an architecture under bench/gpu/torch_llama.py's names.
func modelJSON(c model.Config) map[string]any {
	return map[string]any{"dim": c.Dim, "layers": c.Layers, "heads": c.Heads, "kv_heads": c.KVHeads,
		"mlp": c.MLPDim, "vocab": c.Vocab, "eps": c.NormEps, "rope_theta": c.RopeTheta, "tied": c.TieEmbeddings}
}
