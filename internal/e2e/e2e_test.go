// Package e2e runs the torus binary as a user does: real worker processes over
// real gRPC on loopback.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var torus string // the binary under test, built once

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "torus-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	torus = filepath.Join(dir, "torus")
	if out, err := exec.Command("go", "build", "-o", torus, "github.com/torusml/torus/cmd/torus").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build torus: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoFile(p string) string { return filepath.Join("..", "..", p) }

func losses(t *testing.T, metrics string) []float64 {
	t.Helper()
	f, err := os.Open(metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct{ Loss float64 }
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Loss)
	}
	return out
}

// TestTwoWorkersFollowOneWorkersLossCurve: 50 steps of the demo model with 2
// worker processes give 1 worker's loss at every step within 1e-4.
func TestTwoWorkersFollowOneWorkersLossCurve(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the demo model twice")
	}
	dir := t.TempDir()
	curves := map[int][]float64{}
	for _, workers := range []int{1, 2} {
		out := filepath.Join(dir, fmt.Sprint(workers))
		cmd := exec.Command(torus, "train", repoFile("examples/recipes/byte-lm-go.yaml"), "--out", out, "--progress", "none",
			"--set", "schedule.steps=50", "--set", fmt.Sprintf("parallel.workers=%d", workers))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%d workers: %v\n%s", workers, err, b)
		}
		curves[workers] = losses(t, filepath.Join(out, "metrics.jsonl"))
	}
	if len(curves[1]) != 50 || len(curves[2]) != 50 {
		t.Fatalf("steps: %d and %d, want 50", len(curves[1]), len(curves[2]))
	}
	worst := 0.0
	for i := range curves[1] {
		d := math.Abs(curves[1][i] - curves[2][i])
		worst = max(worst, d)
		if d > 1e-4 {
			t.Errorf("step %d: loss %.6f with 1 worker, %.6f with 2", i+1, curves[1][i], curves[2][i])
		}
	}
	t.Logf("largest difference over 50 steps: %.2e (loss %.4f -> %.4f)", worst, curves[1][0], curves[1][49])
}

var (
	pidLine  = regexp.MustCompile(`worker rank (\d+) pid (\d+)`)
	stepLine = regexp.MustCompile(`step +3/`)
)

// TestKilledWorkerStopsTheJob: SIGKILL of one worker in the middle of training
// makes the job stop within 10 seconds, non-zero, naming the lost rank.
func TestKilledWorkerStopsTheJob(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, bytes.Repeat([]byte("a long and boring text about nothing at all. "), 400), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(rec, []byte(fmt.Sprintf(`name: kill
model: {dim: 32, layers: 2, heads: 4, kv_heads: 2, mlp_dim: 64}
data:
  sources: [{type: text_file, path: %s}]
  seq_len: 264
memory: {attn_block_q: 32, attn_block_k: 32}
parallel: {workers: 3}
schedule: {steps: 1000000, warmup_steps: 1}
log: {every: 1}
`, text)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	cmd := exec.Command(torus, "train", rec, "--out", out, "--progress", "plain")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// Wait until training is under way (a few steps logged), then kill rank 1.
	deadline := time.Now().Add(2 * time.Minute)
	for !stepLine.MatchString(stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("training did not start:\n%s", stderr.String())
		}
		select {
		case err := <-done:
			t.Fatalf("train ended early (%v):\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	pid := 0
	for _, m := range pidLine.FindAllStringSubmatch(stderr.String(), -1) {
		if m[1] == "1" {
			pid, _ = strconv.Atoi(m[2])
		}
	}
	if pid == 0 {
		t.Fatalf("no pid for rank 1 in:\n%s", stderr.String())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case err := <-done:
		took := time.Since(killed)
		if err == nil {
			t.Fatalf("train exited 0 after a worker was killed:\n%s", stderr.String())
		}
		if took > 10*time.Second {
			t.Errorf("train took %s to stop, want under 10 s", took)
		}
		msg := stderr.String()
		if !strings.Contains(msg, "worker rank 1: killed by") {
			t.Errorf("the error does not name the killed rank:\n%s", msg)
		}
		if !strings.Contains(msg, "rank 1") || !strings.Contains(msg, "peer lost") {
			t.Errorf("the surviving workers do not name the lost rank:\n%s", msg)
		}
		t.Logf("stopped %s after the kill", took.Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatalf("train still running 30 s after a worker was killed:\n%s", stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
