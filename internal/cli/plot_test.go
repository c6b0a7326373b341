package cli_test

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlotCommand(t *testing.T) {
	dir := t.TempDir()
	for i, n := range []int{40, 25} {
		run := filepath.Join(dir, fmt.Sprint("run", i))
		if err := os.Mkdir(run, 0o755); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for s := 1; s <= n; s++ {
			fmt.Fprintf(&b, `{"step":%d,"loss":%g,"lr":0.001,"tokens_per_s":%d}`+"\n", s, 5-float64(s)/10, 1000+s)
		}
		write(t, run, "metrics.jsonl", b.String())
	}
	write(t, dir, "bad.jsonl", `{"step":1,"loss":2}`+"\n"+`{"step":2,"loss":`+"\n")
	out := filepath.Join(dir, "out.png")
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"two runs", []string{"plot", filepath.Join(dir, "run0"), filepath.Join(dir, "run1"), "--out", out, "--width", "800", "--height", "600"},
			0, "torus: plot: " + out + " (2 run(s), 65 metrics lines)"},
		{"no run", []string{"plot"}, 1, "requires at least 1 arg"},
		{"missing run", []string{"plot", filepath.Join(dir, "nope")}, 1, "plot: " + filepath.Join(dir, "nope") + ": no such run directory or metrics.jsonl"},
		{"malformed line", []string{"plot", filepath.Join(dir, "bad.jsonl")}, 1, "plot: " + filepath.Join(dir, "bad.jsonl") + ":2: not a JSON object"},
		{"too small", []string{"plot", filepath.Join(dir, "run0"), "--out", out, "--width", "10"}, 1, "plot: 10x900 pixels is too small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 600 {
		t.Errorf("%s is %dx%d, want 800x600", out, b.Dx(), b.Dy())
	}
}

// TestTrainTensorBoardAndMetricsAddr: log.tensorboard writes an event file into
// the run directory, --metrics-addr serves while the run goes (its scrapes are
// runlog's tests), and a bad address is refused before training.
func TestTrainTensorBoardAndMetricsAddr(t *testing.T) {
	dir := t.TempDir()
	data := write(t, dir, "text.txt", strings.Repeat("the quick brown fox jumps over the lazy dog. ", 20))
	rec := write(t, dir, "r.yaml", strings.ReplaceAll(tinyRecipe, "{{DATA}}", data))
	runDir := filepath.Join(dir, "run")
	code, _, stderr := run("train", rec, "--out", runDir, "--progress", "none", "--set", "log.tensorboard=true", "--metrics-addr", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "torus: Prometheus metrics at http://127.0.0.1:") {
		t.Errorf("stderr does not say where the metrics are:\n%s", stderr)
	}
	files, err := filepath.Glob(filepath.Join(runDir, "tensorboard", "events.out.tfevents.*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("want one event file in %s/tensorboard, got %v (%v)", runDir, files, err)
	}
	if !strings.Contains(stderr, "torus: TensorBoard events in "+files[0]) {
		t.Errorf("stderr does not name the event file %s:\n%s", files[0], stderr)
	}
	// The header, the file version and two steps: more than the header alone.
	if fi, err := os.Stat(files[0]); err != nil {
		t.Error(err)
	} else if fi.Size() < 3*16+24 {
		t.Errorf("event file %s has %d bytes: want the version and two steps' events", files[0], fi.Size())
	}
	code, _, stderr = run("train", rec, "--out", filepath.Join(dir, "run2"), "--metrics-addr", "127.0.0.1:99999")
	if code == 0 || !strings.Contains(stderr, "metrics: listen on 127.0.0.1:99999") {
		t.Errorf("a bad --metrics-addr: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "run2", "metrics.jsonl")); err == nil {
		t.Error("a run with a bad --metrics-addr trained anyway")
	}
}
