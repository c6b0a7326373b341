package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	dir := t.TempDir()
	data := write(t, dir, "text.txt", strings.Repeat("the quick brown fox jumps over the lazy dog. ", 20))
	rec := write(t, dir, "r.yaml", strings.ReplaceAll(tinyRecipe, "{{DATA}}", data))
	rate := []string{"--matmul-gflops", "100"} // no calibration in tests

	t.Run("fits", func(t *testing.T) {
		code, out, stderr := run(append([]string{"plan", rec, "--memory", "64GiB"}, rate...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"weights", "optimizer state", "stored activations", "largest transient", "GC headroom", "total", "verdict: FITS", "step time", "loss_chunk 2048"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("does not fit: advice, exit 0", func(t *testing.T) {
		code, out, stderr := run(append([]string{"plan", rec, "--memory", "20MiB", "--set", "data.seq_len=65536"}, rate...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(out, "DOES NOT FIT") {
			t.Errorf("no verdict:\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		code, out, stderr := run(append([]string{"plan", rec, "--json", "--set", "parallel.workers=2"}, rate...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var res struct {
			Plans []struct {
				Report struct {
					Total  int64 `json:"total_bytes"`
					Config struct{ SP int }
				} `json:"report"`
			} `json:"plans"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Plans) != 1 {
			t.Fatalf("%v, %d plans:\n%s", err, len(res.Plans), out)
		}
		if p := res.Plans[0].Report; p.Total <= 0 || p.Config.SP != 2 {
			t.Errorf("total %d, sp %d", p.Total, p.Config.SP)
		}
	})
	t.Run("gpu", func(t *testing.T) {
		code, out, stderr := run("plan", rec, "--device", "gpu", "--gpus", "2", "--device-memory", "80GB", "--assume", "tile=8,optimizer-host")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"as torus runs today", "bf16 mixed precision", "ZeRO-2", "ZeRO-Offload", "MLP in tiles of 8 tokens", "FITS"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad device", []string{"--device", "tpu"}, "--device"},
		{"bad memory", []string{"--memory", "lots"}, "--memory"},
		{"gpus on the cpu", []string{"--gpus", "2"}, "--gpus"},
		{"memory on the gpu", []string{"--device", "gpu", "--memory", "1GB"}, "--device-memory"},
		{"bad device memory", []string{"--device", "gpu", "--device-memory", "-3GB"}, "--device-memory"},
		{"bad assume", []string{"--device", "gpu", "--assume", "magic"}, "--assume"},
		{"flash-attn-grad is torus's own now", []string{"--device", "gpu", "--assume", "flash-attn-grad"}, "torus itself now accumulates dK/dV per key block"},
		{"bad set", []string{"--set", "memory.offload=tape"}, "memory.offload"},
		{"gpus not dividing dp", []string{"--device", "gpu", "--gpus", "3", "--set", "parallel.workers=2", "--set", "parallel.dp=2"}, "parallel.dp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(append(append([]string{"plan", rec}, rate...), tc.args...)...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q: want an error naming %q", code, stderr, tc.want)
			}
		})
	}
	t.Run("missing recipe", func(t *testing.T) {
		code, _, stderr := run("plan", filepath.Join(dir, "nope.yaml"))
		if code == 0 || !strings.Contains(stderr, "nope.yaml") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}
