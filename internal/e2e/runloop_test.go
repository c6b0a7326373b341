package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loopRecipe is a tiny model that trains fast on the README, for the run
// loop's tests: steps steps, a checkpoint every `every` (0: none).
func loopRecipe(t *testing.T, steps, every int, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "loop.yaml")
	src := fmt.Sprintf(`name: loop-e2e
seed: 5
model: {dim: 32, layers: 2, heads: 4, kv_heads: 2, mlp_dim: 64}
data:
  sources: [{type: text_file, path: %s}]
  seq_len: 128
memory: {attn_block_q: 32, attn_block_k: 32}
optim: {lr: 1e-3}
schedule: {steps: %d, warmup_steps: 2}
checkpoint: {every_steps: %d, keep_last: 2}
log: {progress: plain, every: 1}
%s`, repoFile("README.md"), steps, every, extra)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// metricLines counts the lines of a run's metrics.jsonl.
func metricLines(run string) int {
	b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	return strings.Count(string(b), "\n")
}

// TestDivergingRunStopsOnTheLastFiniteCheckpoint: a learning rate of 1e30
// makes step 2's loss NaN; the run stops non-zero naming the step and the
// gradient, nothing of step 2 is checkpointed, latest names step 1, and
// `torus ckpt verify` accepts it.
func TestDivergingRunStopsOnTheLastFiniteCheckpoint(t *testing.T) {
	rec := loopRecipe(t, 20, 1, "")
	run := filepath.Join(t.TempDir(), "run")
	out, err := exec.Command(torus, "train", rec, "--out", run, "--set", "optim.lr=1e30", "--set", "optim.max_grad_norm=0").CombinedOutput()
	if exitCode(err) != 1 {
		t.Fatalf("diverging run: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"step 2: non-finite loss", "lm_head.weight", "ckpt/step-000001, holds finite weights", "resume with: torus train"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	latest, err := os.ReadFile(filepath.Join(run, "ckpt", "latest"))
	if err != nil || strings.TrimSpace(string(latest)) != "step-000001" {
		t.Fatalf("latest = %q (%v), want step-000001", latest, err)
	}
	if b, err := exec.Command(torus, "ckpt", "verify", filepath.Join(run, "ckpt", "step-000001")).CombinedOutput(); err != nil {
		t.Errorf("verify: %v\n%s", err, b)
	}
}

// TestSignalStopsWithACheckpoint: SIGINT and SIGTERM to torus train in the
// middle of a run, on 1 worker and on 2 worker processes (the signal passed
// on to them, which agree on the step), finish the step, write a checkpoint
// of it (the recipe writes none), say how to resume and exit 130 and 143;
// resuming gives the uninterrupted run's losses bitwise.
func TestSignalStopsWithACheckpoint(t *testing.T) {
	const steps = 40
	for _, workers := range []int{1, 2} {
		rec := loopRecipe(t, steps, 0, fmt.Sprintf("parallel: {workers: %d}\n", workers))
		whole := filepath.Join(t.TempDir(), "whole")
		if b, err := exec.Command(torus, "train", rec, "--out", whole).CombinedOutput(); err != nil {
			t.Fatalf("uninterrupted run: %v\n%s", err, b)
		}
		want := losses(t, filepath.Join(whole, "metrics.jsonl"))
		for _, tc := range []struct {
			sig  syscall.Signal
			code int
		}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
			t.Run(fmt.Sprintf("%d-workers-%s", workers, tc.sig), func(t *testing.T) {
				signalStop(t, rec, tc.sig, tc.code, steps, want)
			})
		}
	}
}

func signalStop(t *testing.T, rec string, sig syscall.Signal, code, steps int, want []float64) {
	{
		{
			run := filepath.Join(t.TempDir(), "run")
			cmd := exec.Command(torus, "train", rec, "--out", run)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			if !waitFor(2*time.Minute, func() bool { return metricLines(run) >= 3 }) {
				t.Fatalf("training did not start:\n%s", stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if got := exitCode(err); got != code {
				t.Fatalf("exit %d (%v), want %d:\n%s", got, err, code, stderr.String())
			}
			stopped := metricLines(run)
			if stopped >= steps {
				t.Fatalf("the run finished (%d steps) before the signal stopped it", stopped)
			}
			ckpt := filepath.Join(run, "ckpt", fmt.Sprintf("step-%06d", stopped))
			for _, w := range []string{"checkpoint " + ckpt + " holds it", "resume with: torus train " + filepath.Join(run, "recipe.yaml") + " --resume " + run} {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stderr.String())
				}
			}
			if b, err := exec.Command(torus, "train", filepath.Join(run, "recipe.yaml"), "--resume", run).CombinedOutput(); err != nil {
				t.Fatalf("resume: %v\n%s", err, b)
			}
			if got := losses(t, filepath.Join(run, "metrics.jsonl")); !slices.Equal(got, want) {
				t.Errorf("stopped at step %d and resumed: losses differ from the uninterrupted run's\n got %v\nwant %v", stopped, got, want)
			}
			t.Logf("stopped after step %d, exit %d; resumed to step %d with the uninterrupted losses", stopped, code, steps)
		}
	}
}

// TestRunDirectoryLock: a second torus train on the run directory of a live
// one (a scheduler retrying with --resume auto) is refused at once naming the
// holder, and the live run goes on; once that run is killed, the next start
// takes its stale lock over and says so.
func TestRunDirectoryLock(t *testing.T) {
	rec := loopRecipe(t, 100000, 50, "")
	run := filepath.Join(t.TempDir(), "run")
	first := exec.Command(torus, "train", rec, "--out", run)
	var stderr syncBuffer
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	if !waitFor(2*time.Minute, func() bool { return metricLines(run) >= 2 }) {
		t.Fatalf("training did not start:\n%s", stderr.String())
	}
	start := time.Now()
	out, err := exec.Command(torus, "train", rec, "--out", run, "--resume", "auto").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), fmt.Sprintf("pid %d", first.Process.Pid)) {
		t.Fatalf("second run on a live run directory: %v\n%s\nwant exit 1 naming pid %d", err, out, first.Process.Pid)
	}
	t.Logf("refused in %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	if strings.Contains(string(out), "resume auto: the metrics") {
		t.Errorf("the refused run touched the live run's files:\n%s", out)
	}
	before := metricLines(run)
	if !waitFor(time.Minute, func() bool { return metricLines(run) > before }) {
		t.Fatalf("the first run stopped training after the refusal:\n%s", stderr.String())
	}
	first.Process.Kill()
	first.Wait()
	out, err = exec.Command(torus, "train", rec, "--out", run, "--resume", "auto", "--set", "schedule.steps=2").CombinedOutput()
	if !strings.Contains(string(out), "which is gone: taking it over") {
		t.Errorf("after the holder died: %v\n%s\nwant the stale lock taken over", err, out)
	}
}

// TestExportIntoACheckpointIsRefused: torus export --out inside a run's ckpt/
// (or any checkpoint folder) is refused and writes nothing there.
func TestExportIntoACheckpointIsRefused(t *testing.T) {
	rec := loopRecipe(t, 2, 1, "")
	run := filepath.Join(t.TempDir(), "run")
	if b, err := exec.Command(torus, "train", rec, "--out", run).CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, b)
	}
	step := filepath.Join(run, "ckpt", "step-000002")
	for _, out := range []string{step, filepath.Join(run, "ckpt"), filepath.Join(run, "ckpt", "new"), filepath.Join(step, "sub")} {
		b, err := exec.Command(torus, "export", run, "--out", out).CombinedOutput()
		if exitCode(err) != 1 || !strings.Contains(string(b), "a run's checkpoints") {
			t.Errorf("export --out %s: %v\n%s", out, err, b)
		}
	}
	if _, err := os.Stat(filepath.Join(run, "ckpt", "new")); err == nil {
		t.Errorf("the refused export created %s", filepath.Join(run, "ckpt", "new"))
	}
	if b, err := exec.Command(torus, "ckpt", "verify", step).CombinedOutput(); err != nil {
		t.Errorf("verify after the refused exports: %v\n%s", err, b)
	}
}

// TestAbsurdSizesAreRefusedQuickly: a config.json with a billion layers, and
// a recipe whose model cannot fit this machine, are refused in under a second
// naming the field, before anything is allocated for them.
func TestAbsurdSizesAreRefusedQuickly(t *testing.T) {
	from := t.TempDir()
	cfg := `{"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1000000000, "num_attention_heads": 4, "num_key_value_heads": 2}`
	if err := os.WriteFile(filepath.Join(from, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sets []string
		want string
	}{
		{"config.json", []string{"model.from=" + from}, "num_hidden_layers 1000000000 is over the limit of 1024"},
		{"recipe", []string{"model.layers=1000000"}, "--set model.layers=1000000: must be <= 1024, got 1000000"},
		{"beyond memory", []string{"model.layers=1024", "model.dim=131072", "model.heads=64", "model.kv_heads=64", "model.mlp_dim=1048576"}, "their weights alone take"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"train", loopRecipe(t, 2, 0, ""), "--out", filepath.Join(t.TempDir(), "run")}
			for _, s := range tc.sets {
				args = append(args, "--set", s)
			}
			start := time.Now()
			b, err := exec.Command(torus, args...).CombinedOutput()
			took := time.Since(start)
			if exitCode(err) != 1 || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%v\n%s\nwant exit 1 and %q", err, b, tc.want)
			}
			if took > time.Second {
				t.Errorf("refused after %s, want under a second", took)
			}
			t.Logf("refused in %s", took.Round(time.Millisecond))
		})
	}
}
