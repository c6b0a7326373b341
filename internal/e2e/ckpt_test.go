package e2e

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ckptRecipe is a small model that checkpoints every step, so a run spends much
// of its time writing checkpoints (about 40 MB each).
func ckptRecipe(t *testing.T, steps int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ckpt.yaml")
	src := fmt.Sprintf(`name: ckpt-e2e
seed: 7
model: {dim: 256, layers: 4, heads: 4, kv_heads: 2, mlp_dim: 688}
data:
  sources: [{type: text_file, path: %s}]
  seq_len: 64
  interleave: 2
memory: {attn_block_q: 32, attn_block_k: 32}
optim: {lr: 1e-3}
schedule: {steps: %d, warmup_steps: 2, grad_accum: 1}
checkpoint: {every_steps: 1, keep_last: 2}
log: {progress: none}
`, repoFile("README.md"), steps)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond every millisecond until it holds or the deadline passes.
func waitFor(deadline time.Duration, cond func() bool) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	end := time.After(deadline)
	for !cond() {
		select {
		case <-tick.C:
		case <-end:
			return false
		}
	}
	return true
}

// writing reports whether a checkpoint is being written in ckptDir (a .tmp
// folder exists).
func writing(ckptDir string) bool {
	es, _ := os.ReadDir(ckptDir)
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".tmp") && e.IsDir() {
			return true
		}
	}
	return false
}

// TestKillDuringCheckpointWrites: SIGKILL lands on `torus train` at 30 random
// moments while a checkpoint is being written (from the .tmp folder's creation
// to a little past its commit). After each, ckpt/latest names a checkpoint that
// `torus ckpt verify` accepts, and the next round resumes from it (--resume
// auto), so every one is also resumed from.
func TestKillDuringCheckpointWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("30 runs of torus train")
	}
	recipe := ckptRecipe(t, 1000)
	run := filepath.Join(t.TempDir(), "run")
	ckptDir := filepath.Join(run, "ckpt")
	rng := rand.New(rand.NewPCG(1, 2))
	kills, lastStep, round := 0, -1, 0
	for ; kills < 30; round++ {
		// About half of the kills land inside a write on a quiet machine (a
		// write often ends before the random delay does; more land under load).
		if round > 150 {
			t.Fatalf("only %d of 30 kills landed during a write in %d rounds", kills, round)
		}
		cmd := exec.Command(torus, "train", recipe, "--out", run, "--resume", "auto")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it write a few checkpoints first, then kill it at a random moment of one.
		skip := 1 + rng.IntN(3)
		for range skip {
			waitFor(30*time.Second, func() bool { return writing(ckptDir) })
			waitFor(30*time.Second, func() bool { return !writing(ckptDir) })
		}
		landed := waitFor(60*time.Second, func() bool { return writing(ckptDir) })
		delay := time.Duration(rng.IntN(60_000)) * time.Microsecond // 0-60 ms: a write takes about that
		timer := time.NewTimer(delay)
		<-timer.C
		stillWriting := writing(ckptDir)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if !landed {
			t.Fatalf("round %d: no checkpoint write seen in 60 s\n%s", round, stderr.String())
		}
		if stillWriting {
			kills++
		}
		out, err := exec.Command(torus, "ckpt", "verify", run).CombinedOutput()
		if err != nil {
			t.Fatalf("round %d (killed %v into a write): torus ckpt verify: %v\n%s\ntrain's stderr:\n%s", round, delay, err, out, stderr.String())
		}
		latest, err := os.ReadFile(filepath.Join(ckptDir, "latest"))
		if err != nil {
			t.Fatal(err)
		}
		var step int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(latest)), "step-%d", &step); err != nil {
			t.Fatalf("round %d: latest %q: %v", round, latest, err)
		}
		if step < lastStep {
			t.Fatalf("round %d: latest went back from step %d to %d", round, lastStep, step)
		}
		lastStep = step
	}
	// One more resume runs to a clean end from the last kill's checkpoint.
	out, err := exec.Command(torus, "train", recipe, "--out", run, "--resume", "auto", "--set", fmt.Sprintf("schedule.steps=%d", lastStep+2)).CombinedOutput()
	if err != nil {
		t.Fatalf("final resume: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(fmt.Sprintf("resuming from %s", filepath.Join(ckptDir, fmt.Sprintf("step-%06d", lastStep))))) {
		t.Errorf("final resume did not start from step %d:\n%s", lastStep, out)
	}
	t.Logf("30 kills during checkpoint writes in %d rounds; the last checkpoint: step %d", round, lastStep)
}

// TestResumeAutoAfterCrashBeforeLatest: a crash after a checkpoint's folder is
// renamed into place (its commit) but before ckpt/latest is written leaves a
// complete checkpoint that latest does not name; --resume auto continues from
// it rather than starting over into the existing step folders (which then failed
// every restart with "step-000005 already exists" in TestLaunchRestartsAfterKill).
func TestResumeAutoAfterCrashBeforeLatest(t *testing.T) {
	recipe := ckptRecipe(t, 3)
	run := filepath.Join(t.TempDir(), "run")
	ckptDir := filepath.Join(run, "ckpt")
	if out, err := exec.Command(torus, "train", recipe, "--out", run).CombinedOutput(); err != nil {
		t.Fatalf("torus train: %v\n%s", err, out)
	}
	if err := os.Remove(filepath.Join(ckptDir, "latest")); err != nil { // as if killed just before it was written
		t.Fatal(err)
	}
	out, err := exec.Command(torus, "train", recipe, "--out", run, "--resume", "auto", "--set", "schedule.steps=5").CombinedOutput()
	if err != nil {
		t.Fatalf("torus train --resume auto: %v\n%s", err, out)
	}
	if want := "resuming from " + filepath.Join(ckptDir, "step-000003"); !bytes.Contains(out, []byte(want)) {
		t.Fatalf("want %q in:\n%s", want, out)
	}
	if latest, err := os.ReadFile(filepath.Join(ckptDir, "latest")); err != nil || strings.TrimSpace(string(latest)) != "step-000005" {
		t.Errorf("latest after the resumed run = %q, %v; want step-000005", latest, err)
	}
}

// TestCorruptCheckpointIsRefused: one flipped byte in any file of a checkpoint
// makes `torus ckpt verify` fail naming that file, and `torus train --resume`
// refuse with the same message.
func TestCorruptCheckpointIsRefused(t *testing.T) {
	recipe := ckptRecipe(t, 2)
	run := filepath.Join(t.TempDir(), "run")
	if out, err := exec.Command(torus, "train", recipe, "--out", run).CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	ckpt := filepath.Join(run, "ckpt", "step-000002")
	files, err := os.ReadDir(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(f.Name(), func(t *testing.T) {
			path := filepath.Join(ckpt, f.Name())
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o644)
			bad := bytes.Clone(orig)
			bad[len(bad)/2] ^= 0x10
			if err := os.WriteFile(path, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(torus, "ckpt", "verify", ckpt).CombinedOutput()
			if err == nil || !strings.Contains(string(out), f.Name()) {
				t.Fatalf("verify: %v, output does not name %s:\n%s", err, f.Name(), out)
			}
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "torus: "))
			out, err = exec.Command(torus, "train", recipe, "--out", filepath.Join(t.TempDir(), "resumed"), "--resume", ckpt, "--set", "schedule.steps=3").CombinedOutput()
			if err == nil || !strings.Contains(string(out), msg) {
				t.Fatalf("resume: %v, output lacks verify's message %q:\n%s", err, msg, out)
			}
		})
	}
}

// TestExportImportRoundTrip: `torus export` of a checkpoint, imported back with
// model.from, gives the same first-step loss (a function of every logit) as the
// checkpoint folder itself imported the same way; the export is a complete
// Hugging Face folder.
func TestExportImportRoundTrip(t *testing.T) {
	recipe := ckptRecipe(t, 2)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if out, err := exec.Command(torus, "train", recipe, "--out", run).CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	hf := filepath.Join(dir, "hf")
	if out, err := exec.Command(torus, "export", run, "--format", "hf", "--out", hf, "--dtype", "float32").CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(hf, f)); err != nil {
			t.Errorf("export lacks %s: %v", f, err)
		}
	}
	firstLoss := func(from string) float64 {
		out := filepath.Join(dir, "from-"+filepath.Base(from))
		b, err := exec.Command(torus, "train", recipe, "--out", out, "--set", "model.from="+from,
			"--set", "schedule.steps=1", "--set", "schedule.warmup_steps=0", "--set", "checkpoint.every_steps=0").CombinedOutput()
		if err != nil {
			t.Fatalf("train from %s: %v\n%s", from, err, b)
		}
		l := losses(t, filepath.Join(out, "metrics.jsonl"))
		if len(l) != 1 {
			t.Fatalf("train from %s: %d steps", from, len(l))
		}
		return l[0]
	}
	want := firstLoss(filepath.Join(run, "ckpt", "step-000002"))
	if got := firstLoss(hf); got != want {
		t.Errorf("loss from the export %.9g, from the checkpoint %.9g", got, want)
	}
}

// TestResumeWorkers: `torus train` with 2 worker processes, resumed from its
// step-2 checkpoint on 2 workers and on 1, continues the uninterrupted run's
// loss curve (bitwise on 2, within 1e-6 on 1).
func TestResumeWorkers(t *testing.T) {
	recipe := ckptRecipe(t, 4)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole")
	train := func(args ...string) {
		t.Helper()
		a := append([]string{"train", recipe, "--set", "checkpoint.every_steps=2", "--set", "checkpoint.keep_last=0"}, args...)
		if out, err := exec.Command(torus, a...).CombinedOutput(); err != nil {
			t.Fatalf("torus %v: %v\n%s", a, err, out)
		}
	}
	train("--out", whole, "--set", "parallel.workers=2")
	want := losses(t, filepath.Join(whole, "metrics.jsonl"))
	for _, tc := range []struct {
		workers int
		tol     float64
	}{{2, 0}, {1, 1e-6}} {
		out := filepath.Join(dir, fmt.Sprintf("resumed-on-%d", tc.workers))
		train("--out", out, "--resume", filepath.Join(whole, "ckpt", "step-000002"), "--set", fmt.Sprintf("parallel.workers=%d", tc.workers))
		got := losses(t, filepath.Join(out, "metrics.jsonl"))
		if len(got) != 2 {
			t.Fatalf("resumed on %d: %d steps, want steps 3 and 4", tc.workers, len(got))
		}
		for i, g := range got {
			w := want[2+i]
			if d := math.Abs(g-w) / math.Abs(w); d > tc.tol {
				t.Errorf("resumed on %d workers: step %d loss %.9g, uninterrupted %.9g", tc.workers, 3+i, g, w)
			}
		}
	}
}
