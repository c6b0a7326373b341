package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
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

var (
	launchPid = regexp.MustCompile(`^torus: worker rank (\d+) pid (\d+)$`)
	plainStep = regexp.MustCompile(`^step +(\d+)/`)
)

// TestLaunchRestartsAfterKill (issue 7, criterion 2): on the four hosts, kill -9
// of a random worker at a random step; every other node notices within 5
// seconds, the job restarts from the latest checkpoint and completes, and the
// final weights equal an uninterrupted run's bitwise.
func TestLaunchRestartsAfterKill(t *testing.T) {
	h := newHosts(t, 4)
	dir := t.TempDir()
	const steps = 60
	rec := tinyRecipe(t, dir, steps, "checkpoint: {every_steps: 5}")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	victim, atStep := rng.IntN(4), 8+rng.IntN(23)
	t.Logf("seed %d: kill -9 rank %d once rank 0 has done step %d", seed, victim, atStep)

	ref := filepath.Join(dir, "uninterrupted")
	if b, err := exec.Command(torus, "train", rec, "--out", ref, "--progress", "none").CombinedOutput(); err != nil {
		t.Fatalf("torus train with 4 local workers: %v\n%s", err, b)
	}

	var (
		mu       sync.Mutex
		pid      int       // the victim's first process
		killedAt time.Time // zero until it is killed
		noticed  = map[int]time.Time{}
	)
	run := filepath.Join(dir, "killed")
	logs, _ := h.launch(rec, run, 3*time.Minute, func(node int, line string) {
		mu.Lock()
		defer mu.Unlock()
		if m := launchPid.FindStringSubmatch(line); m != nil && pid == 0 {
			if r, _ := strconv.Atoi(m[1]); r == victim {
				pid, _ = strconv.Atoi(m[2])
			}
		}
		if m := plainStep.FindStringSubmatch(line); m != nil && node == 0 && killedAt.IsZero() {
			// The kill waits for a committed checkpoint: the writer streams
			// in the background at low priority, and on a busy machine the
			// first one can still be in flight at step atStep.
			if s, _ := strconv.Atoi(m[1]); s >= atStep && pid != 0 && committed(run) {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Errorf("kill -9 %d: %v", pid, err)
				}
				killedAt = time.Now()
				t.Logf("killed rank %d (pid %d) at rank 0's step %d", victim, pid, s)
			}
		}
		if strings.Contains(line, "restart 1 of") && !killedAt.IsZero() {
			noticed[node] = time.Now()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if killedAt.IsZero() {
		t.Fatalf("the run ended before rank 0 reached step %d with a checkpoint committed", atStep)
	}
	for node := range 4 {
		at, ok := noticed[node]
		switch {
		case !ok:
			t.Errorf("node %d did not restart:\n%s", node, logs[node])
		case node != victim && at.Sub(killedAt) > 5*time.Second:
			t.Errorf("node %d noticed the loss after %s, want within 5 s", node, at.Sub(killedAt))
		default:
			t.Logf("node %d restarted %s after the kill", node, at.Sub(killedAt).Round(time.Millisecond))
		}
	}
	if !strings.Contains(logs[0], "torus: resuming from") {
		t.Errorf("rank 0 did not resume from a checkpoint:\n%s", logs[0])
	}
	want, got := losses(t, filepath.Join(ref, "metrics.jsonl")), losses(t, filepath.Join(run, "metrics.jsonl"))
	if len(got) != steps || fmt.Sprint(want) != fmt.Sprint(got) {
		t.Errorf("loss curve after the restart:\n%v\nuninterrupted:\n%v", got, want)
	}
	files, err := os.ReadDir(filepath.Join(ref, "final"))
	if err != nil || len(files) == 0 {
		t.Fatalf("uninterrupted run's final model: %v", err)
	}
	for _, f := range files {
		a, errA := os.ReadFile(filepath.Join(ref, "final", f.Name()))
		b, errB := os.ReadFile(filepath.Join(run, "final", f.Name()))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("final/%s differs from the uninterrupted run's (%v, %v)", f.Name(), errA, errB)
		}
	}
}

// committed reports whether the run directory run has a committed checkpoint:
// its ckpt/latest file exists (it is written after the step folder's rename).
func committed(run string) bool {
	_, err := os.Stat(filepath.Join(run, "ckpt", "latest"))
	return err == nil
}
