package trainer

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/device"
	"github.com/torusml/torus/model"
)

func TestDeviceStats(t *testing.T) {
	b, err := device.CPU()
	if err != nil {
		t.Fatal(err)
	}
	d := newDeviceStats("cpu", 0, b.Compute, dtypes.Float32)
	if d.peak <= 0 || d.sampler != nil {
		t.Fatalf("cpu: peak %g, sampler %v", d.peak, d.sampler)
	}
	if !strings.Contains(d.describe(), "measured") {
		t.Errorf("describe: %q", d.describe())
	}
	cfg := model.Config{Vocab: 10, Dim: 4, Layers: 2, Heads: 2, KVHeads: 1, MLPDim: 8}
	var s StepStats
	d.fill(&s, cfg, 6, 4, 2, 0.5)
	want := 13536 * 4.0 / 2 / 0.5 / d.peak // model.StepFLOPs of cfg at 6 tokens is 13536
	if math.Abs(s.MFU-want) > 1e-12*want {
		t.Errorf("mfu %g, want %g", s.MFU, want)
	}
	line, _ := json.Marshal(s)
	if !strings.Contains(string(line), `"mfu":`) || strings.Contains(string(line), "gpu_utilization") || strings.Contains(string(line), "device_memory") {
		t.Errorf("cpu metrics line: %s", line)
	}

	// A cuda trainer where NVML is not to be had still gets a peak (measured)
	// and no GPU figures; with NVML, the GPU's.
	g := newDeviceStats("cuda", 0, b.Compute, dtypes.BFloat16)
	if _, err := device.GPUs(); err != nil {
		if g.sampler != nil || g.peak <= 0 {
			t.Errorf("cuda without NVML: sampler %v, peak %g", g.sampler, g.peak)
		}
	} else if g.sampler == nil {
		t.Error("cuda with NVML: no sampler")
	}
	var gs StepStats
	g.fill(&gs, cfg, 6, 1, 1, 1)
	t.Logf("%s; %+v", g.describe(), gs.Device)
}

// On a GPU with NVML and a CUDA PJRT plugin: the datasheet peak, and this
// process's device memory once it holds some. Skipped elsewhere.
func TestDeviceStatsCUDA(t *testing.T) {
	if _, err := device.GPUs(); err != nil {
		t.Skipf("no NVML: %v", err)
	}
	b, err := device.Open("cuda", device.Options{})
	if err != nil {
		t.Skipf("no cuda backend: %v", err)
	}
	if _, err := model.MatmulGFLOPs(b.Compute, 100*time.Millisecond); err != nil { // something on the device
		t.Fatal(err)
	}
	d := newDeviceStats("cuda", 0, b.Compute, dtypes.BFloat16)
	if d.sampler == nil || d.peak <= 0 {
		t.Fatalf("cuda: sampler %v, peak %g", d.sampler, d.peak)
	}
	cfg := model.Config{Vocab: 10, Dim: 4, Layers: 2, Heads: 2, KVHeads: 1, MLPDim: 8}
	var s StepStats
	d.fill(&s, cfg, 6, 1, 1, 1e-9)
	sm, _ := d.sampler.Sample()
	t.Logf("%s; %+v; own memory figure: %v", d.describe(), s.Device, sm.Own)
	if s.MFU <= 0 || s.MemoryUsed <= 0 || s.MemoryPeak < s.MemoryUsed {
		t.Errorf("cuda step figures: %+v", s.Device)
	}
}
