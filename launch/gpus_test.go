package launch_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/torusml/torus/launch"
)

func TestGPUAssignment(t *testing.T) {
	for _, tc := range []struct {
		workers, gpus int
		visible       string
		want          []string
	}{
		{2, 2, "", []string{"0", "1"}},
		{1, 8, "", []string{"0"}},
		{4, 2, "", []string{"0", "1", "0", "1"}},                     // more workers than GPUs: round-robin
		{3, 8, "5,2", []string{"5", "2", "5"}},                       // the user's list, not NVML's count
		{2, 8, " GPU-abc , GPU-def", []string{"GPU-abc", "GPU-def"}}, // UUIDs, spaces trimmed
		{3, 0, "", nil},                                              // no GPU
		{3, 0, "1,2", nil},                                           // a list, but NVML sees no GPU
		{0, 2, "", nil},
	} {
		if got := launch.GPUAssignment(tc.workers, tc.gpus, tc.visible); !slices.Equal(got, tc.want) {
			t.Errorf("GPUAssignment(%d, %d, %q) = %q, want %q", tc.workers, tc.gpus, tc.visible, got, tc.want)
		}
	}
}

// Each local worker sees CUDA_VISIBLE_DEVICES of its own, unless the backend is cpu.
func TestRunLocalGPUs(t *testing.T) {
	if old, set := os.LookupEnv("CUDA_VISIBLE_DEVICES"); set {
		os.Unsetenv("CUDA_VISIBLE_DEVICES")
		t.Cleanup(func() { os.Setenv("CUDA_VISIBLE_DEVICES", old) })
	}
	twoGPUs := func() (int, error) { return 2, nil }
	for _, tc := range []struct {
		name, backend, visible string
		want                   []string // by rank; "" unset
		share                  bool
	}{
		{"one each, shared round-robin", "auto", "", []string{"0", "1", "0"}, true},
		{"the user's list", "cuda", "7", []string{"7", "7", "7"}, true},
		{"cpu: left alone", "cpu", "", []string{"", "", ""}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.visible != "" {
				t.Setenv("CUDA_VISIBLE_DEVICES", tc.visible)
			}
			var out bytes.Buffer
			err := launch.RunLocal(context.Background(), launch.LocalConfig{
				Workers: 3, Backend: tc.backend, GPUs: twoGPUs, Stderr: &out, Grace: time.Second,
				Command: sh(func(int) string { return listenAndRead + `echo "cvd=${CUDA_VISIBLE_DEVICES-}" >&2` }),
			})
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			for r, want := range tc.want {
				line := "cvd=" + want
				if r > 0 {
					line = "[rank " + string(rune('0'+r)) + "] " + line
				}
				if !strings.Contains(out.String(), line+"\n") {
					t.Errorf("rank %d: want %q in:\n%s", r, line, out.String())
				}
			}
			if strings.Contains(out.String(), "round-robin") != tc.share {
				t.Errorf("share line: want %v:\n%s", tc.share, out.String())
			}
		})
	}
}
