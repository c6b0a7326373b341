package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/torusml/torus/device"
)

// torus gpus answers on every machine: the table (or JSON) where the NVIDIA
// driver is, one line saying why not where it is not; exit 0 either way.
func TestGPUs(t *testing.T) {
	_, nvmlErr := device.GPUs()
	code, out, stderr := run("gpus")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if nvmlErr != nil {
		if !strings.HasPrefix(out, "torus gpus: no NVIDIA driver: ") {
			t.Errorf("without a driver: %q", out)
		}
	} else if !strings.Contains(out, "driver") || !strings.Contains(out, "GiB") {
		t.Errorf("with a driver:\n%s", out)
	}
	t.Logf("torus gpus:\n%s", out)

	code, out, stderr = run("gpus", "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, stderr)
	}
	var gpus []device.GPU
	if err := json.Unmarshal([]byte(out), &gpus); err != nil {
		t.Fatalf("--json: %v:\n%s", err, out)
	}
	if nvmlErr != nil && (len(gpus) != 0 || !strings.Contains(stderr, "no NVIDIA driver")) {
		t.Errorf("--json without a driver: %d GPUs, stderr %q", len(gpus), stderr)
	}
	for _, g := range gpus {
		if g.Name == "" || g.MemoryTotal == 0 {
			t.Errorf("--json: %+v", g)
		}
	}
}

// torus plan --device gpu plans for GPU 0's free memory where NVML sees a GPU,
// and for --device-memory's default where it does not.
func TestPlanGPUMemory(t *testing.T) {
	dir := t.TempDir()
	data := write(t, dir, "text.txt", strings.Repeat("the quick brown fox jumps over the lazy dog. ", 20))
	rec := write(t, dir, "r.yaml", strings.ReplaceAll(tinyRecipe, "{{DATA}}", data))
	code, out, stderr := run("plan", rec, "--device", "gpu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	gpus, err := device.GPUs()
	if err == nil {
		t.Logf("torus plan --device gpu:\n%s", out)
	}
	if fromNVML := strings.Contains(out, "from NVML"); fromNVML != (err == nil && len(gpus) > 0) {
		t.Errorf("NVML: %v, %d GPUs; the plan says:\n%s", err, len(gpus), out)
	}
	if code, out, _ := run("plan", rec, "--device", "gpu", "--device-memory", "80GB"); code != 0 || strings.Contains(out, "from NVML") {
		t.Errorf("--device-memory given: exit %d, still from NVML:\n%s", code, out)
	}
}
