package runlog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// scrape GETs url and returns the metric lines (no comments) by series name
// with labels: `torus_loss{rank="0"}` -> "2.5".
func scrape(t *testing.T, url string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExporterServesSteps(t *testing.T) {
	e := NewExporter(0)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.now = func() time.Time { return clock }
	e.started = clock
	addr, err := e.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}()
	url := fmt.Sprintf("http://%s/metrics", addr)

	e.SetRestarts(2)
	e.Resumed(10, clock.Add(-30*time.Second))
	// Two steps as the trainer's StepStats encode them: the second writes a
	// checkpoint; eval_loss is a field the trainer may add.
	steps := []map[string]any{
		{"step": 11, "loss": 3.25, "lr": 1e-3, "grad_norm": 0.5, "tokens": 2048, "tokens_per_s": 4096.0,
			"step_seconds": 0.5, "peak_rss_bytes": 1 << 30, "comm_wait_seconds": 0.125, "data_wait_seconds": 0.0625,
			"memory": map[string]any{"weights": 1000, "grads": 1000, "optim": 2000, "activations_peak": 500, "largest_piece": "mlp"},
			"mfu":    0.25},
		{"step": 12, "loss": 3.0, "lr": 9e-4, "grad_norm": 0.25, "tokens": 2048, "tokens_per_s": 8192.0,
			"step_seconds": 0.25, "peak_rss_bytes": 1 << 30, "data_wait_seconds": 0, "checkpoint": "step-12",
			"memory":    map[string]any{"weights": 1000, "grads": 1000, "optim": 2000, "activations_peak": 700},
			"eval_loss": 3.5, "device_memory_used_bytes": 4096},
	}
	got0 := scrape(t, url) // after the resume, before any step
	clock = clock.Add(10 * time.Second)
	if err := e.Observe(steps[0]); err != nil {
		t.Fatal(err)
	}
	got1 := scrape(t, url)
	clock = clock.Add(5 * time.Second)
	if err := e.Observe(steps[1]); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(7 * time.Second)
	got2 := scrape(t, url)

	const r = `{rank="0"}`
	tests := []struct {
		name   string
		got    map[string]string
		series string
		want   string
	}{
		{"resumed step", got0, "torus_step" + r, "10"},
		{"resumes", got0, "torus_resumes_total" + r, "1"},
		{"restarts", got0, "torus_restarts" + r, "2"},
		{"checkpoint age from the resumed checkpoint", got0, "torus_checkpoint_age_seconds" + r, "30"},
		{"checkpoint step", got0, "torus_checkpoint_step" + r, "10"},
		{"step", got1, "torus_step" + r, "11"},
		{"loss", got1, "torus_loss" + r, "3.25"},
		{"lr", got1, "torus_learning_rate" + r, "0.001"},
		{"grad norm", got1, "torus_grad_norm" + r, "0.5"},
		{"tokens/s", got1, "torus_tokens_per_second" + r, "4096"},
		{"mfu", got1, "torus_mfu_ratio" + r, "0.25"},
		{"step seconds", got1, "torus_step_seconds" + r, "0.5"},
		{"comm wait", got1, "torus_comm_wait_seconds" + r, "0.125"},
		{"data wait", got1, "torus_data_wait_seconds" + r, "0.0625"},
		{"peak rss", got1, "torus_peak_rss_bytes" + r, "1.073741824e+09"},
		{"weights", got1, `torus_memory_bytes{component="weights",rank="0"}`, "1000"},
		{"grads", got1, `torus_memory_bytes{component="grads",rank="0"}`, "1000"},
		{"optim", got1, `torus_memory_bytes{component="optim",rank="0"}`, "2000"},
		{"activations", got1, `torus_memory_bytes{component="activations",rank="0"}`, "500"},
		{"checkpoint age grows", got1, "torus_checkpoint_age_seconds" + r, "40"},
		{"step 2", got2, "torus_step" + r, "12"},
		{"loss 2", got2, "torus_loss" + r, "3"},
		{"eval loss", got2, "torus_eval_loss" + r, "3.5"},
		{"device memory", got2, "torus_device_memory_used_bytes" + r, "4096"},
		{"activations 2", got2, `torus_memory_bytes{component="activations",rank="0"}`, "700"},
		{"tokens counted", got2, "torus_tokens_total" + r, "4096"},
		{"steps counted", got2, "torus_steps_total" + r, "2"},
		{"step histogram", got2, "torus_step_duration_seconds_count" + r, "2"},
		{"checkpoint age from the new checkpoint", got2, "torus_checkpoint_age_seconds" + r, "7"},
		{"new checkpoint step", got2, "torus_checkpoint_step" + r, "12"},
		{"a field the step left out keeps its value", got2, "torus_comm_wait_seconds" + r, "0.125"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, ok := tt.got[tt.series]; !ok {
				t.Errorf("no %s in the scrape", tt.series)
			} else if v != tt.want {
				t.Errorf("%s = %s, want %s", tt.series, v, tt.want)
			}
		})
	}
	for _, absent := range []string{"torus_eval_loss" + r, "torus_device_memory_used_bytes" + r} {
		if v, ok := got1[absent]; ok {
			t.Errorf("%s = %s before any step had it: want it absent", absent, v)
		}
	}
	if _, ok := got2["go_goroutines"]; !ok {
		t.Error("the Go runtime's collector is missing (go_goroutines)")
	}
	for name := range got2 {
		if !strings.HasPrefix(name, "torus_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") &&
			!strings.HasPrefix(name, "promhttp_") {
			t.Errorf("unexpected series %s", name)
		}
	}
}

func TestExporterBeforeAnyCheckpoint(t *testing.T) {
	e := NewExporter(3)
	clock := time.Unix(1000, 0)
	e.now = func() time.Time { return clock }
	e.started = clock
	clock = clock.Add(90 * time.Second)
	if got := e.checkpointAge(); got != 90 {
		t.Errorf("checkpoint age before any checkpoint = %v, want 90 (since the start)", got)
	}
}

func TestNilExporterAndTensorBoard(t *testing.T) {
	var e *Exporter
	var tb *TensorBoard
	if err := e.Observe(map[string]any{"step": 1}); err != nil {
		t.Error(err)
	}
	e.Resumed(1, time.Time{})
	e.SetRestarts(1)
	if err := e.Close(); err != nil {
		t.Error(err)
	}
	if err := tb.Observe(map[string]any{"step": 1}); err != nil {
		t.Error(err)
	}
	if err := tb.Close(); err != nil {
		t.Error(err)
	}
}

func TestExporterErrors(t *testing.T) {
	e := NewExporter(0)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"bad address", func() error { _, err := e.Listen("not-an-address"); return err }, "metrics: listen on not-an-address"},
		{"not a step", func() error { return e.Observe(func() {}) }, "metrics: step metrics"},
		{"not an object", func() error { return e.Observe([]int{1}) }, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
