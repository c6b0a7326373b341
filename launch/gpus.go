package launch

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/torusml/torus/device"
)

// GPUAssignment is each local worker's CUDA_VISIBLE_DEVICES, one GPU per worker
// as torchrun gives them: worker i gets GPU i mod gpus, or, when the user has
// set CUDA_VISIBLE_DEVICES (visible, "" when unset), the (i mod k)-th of its k
// entries. More workers than GPUs share them round-robin. nil when there is no
// GPU to assign.
func GPUAssignment(workers, gpus int, visible string) []string {
	var pool []string
	if strings.TrimSpace(visible) != "" {
		for _, e := range strings.Split(visible, ",") {
			pool = append(pool, strings.TrimSpace(e))
		}
	} else {
		for g := range max(gpus, 0) {
			pool = append(pool, strconv.Itoa(g))
		}
	}
	if gpus <= 0 || len(pool) == 0 || workers <= 0 {
		return nil
	}
	out := make([]string, workers)
	for i := range out {
		out[i] = pool[i%len(pool)]
	}
	return out
}

// workerGPUs is each worker's CUDA_VISIBLE_DEVICES for c, or nil: none on the
// cpu backend, where NVML sees no GPU, or where the user hid every GPU
// (CUDA_VISIBLE_DEVICES set and empty). It says when workers share GPUs.
func workerGPUs(c LocalConfig) []string {
	if c.Backend == "cpu" || c.Backend == "go" {
		return nil
	}
	visible, set := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	if set && strings.TrimSpace(visible) == "" {
		return nil
	}
	count := c.GPUs
	if count == nil {
		count = func() (int, error) {
			gpus, err := device.GPUs()
			return len(gpus), err
		}
	}
	n, err := count()
	if err != nil || n == 0 {
		return nil // no driver: the workers run on the CPU, as backend auto chooses there
	}
	a := GPUAssignment(c.Workers, n, visible)
	if k := len(distinct(a)); c.Workers > k {
		fmt.Fprintf(c.Stderr, "torus: %d workers share %d GPUs round-robin (CUDA_VISIBLE_DEVICES %s)\n", c.Workers, k, strings.Join(a, ","))
	}
	return a
}

func distinct(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}
