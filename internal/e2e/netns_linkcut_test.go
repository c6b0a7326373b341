package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLaunchSurvivesLinkCut (issue 7, criterion 3): on the four hosts, one
// host's cable is cut (its veth's bridge end set down) for 20 seconds in the
// middle of training. Every node's run aborts, nothing hangs, the job restarts
// once the link is back and completes with the uninterrupted loss curve, and
// every checkpoint verifies.
func TestLaunchSurvivesLinkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts a link for 20 s")
	}
	h := newHosts(t, 4)
	dir := t.TempDir()
	const steps, outage, cutAt = 80, 20 * time.Second, 10
	rec := tinyRecipe(t, dir, steps, "checkpoint: {every_steps: 5, keep_last: 100}")
	ref := filepath.Join(dir, "uninterrupted")
	if b, err := exec.Command(torus, "train", rec, "--out", ref, "--progress", "none").CombinedOutput(); err != nil {
		t.Fatalf("torus train with 4 local workers: %v\n%s", err, b)
	}

	var (
		mu      sync.Mutex
		cutTime time.Time
		upTime  time.Time
		noticed = map[int]time.Time{}
	)
	cable := h.outer[3]
	t.Cleanup(func() { _ = exec.Command("ip", "link", "set", cable, "up").Run() })
	run := filepath.Join(dir, "cut")
	logs, _ := h.launch(rec, run, 3*time.Minute, func(node int, line string) {
		mu.Lock()
		defer mu.Unlock()
		if m := plainStep.FindStringSubmatch(line); m != nil && node == 0 && cutTime.IsZero() {
			if s, _ := strconv.Atoi(m[1]); s >= cutAt {
				if out, err := exec.Command("ip", "link", "set", cable, "down").CombinedOutput(); err != nil {
					t.Errorf("cut %s: %v: %s", cable, err, out)
				}
				cutTime = time.Now()
				t.Logf("cut host %s's link at rank 0's step %d", h.addrs[3], s)
				time.AfterFunc(outage, func() {
					if out, err := exec.Command("ip", "link", "set", cable, "up").CombinedOutput(); err != nil {
						t.Errorf("restore %s: %v: %s", cable, err, out)
					}
					mu.Lock()
					upTime = time.Now()
					mu.Unlock()
				})
			}
		}
		if strings.Contains(line, "restart 1 of") && !cutTime.IsZero() {
			if _, ok := noticed[node]; !ok {
				noticed[node] = time.Now()
			}
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if cutTime.IsZero() {
		t.Fatalf("the run ended before rank 0 reached step %d", cutAt)
	}
	for node := range 4 {
		if at, ok := noticed[node]; !ok {
			t.Errorf("node %d did not abort and restart:\n%s", node, logs[node])
		} else {
			t.Logf("node %d aborted and restarted %s after the cut", node, at.Sub(cutTime).Round(time.Millisecond))
		}
	}
	if upTime.IsZero() {
		t.Errorf("the job finished while the link was down")
	}
	want, got := losses(t, filepath.Join(ref, "metrics.jsonl")), losses(t, filepath.Join(run, "metrics.jsonl"))
	if len(got) != steps || fmt.Sprint(want) != fmt.Sprint(got) {
		t.Errorf("loss curve after the outage:\n%v\nuninterrupted:\n%v", got, want)
	}
	ckpts, _ := filepath.Glob(filepath.Join(run, "ckpt", "step-*"))
	if len(ckpts) != steps/5 {
		t.Errorf("%d checkpoints, want %d: %v", len(ckpts), steps/5, ckpts)
	}
	for _, c := range ckpts {
		if out, err := exec.Command(torus, "ckpt", "verify", c).CombinedOutput(); err != nil {
			t.Errorf("torus ckpt verify %s after the outage: %v\n%s", c, err, out)
		}
	}
	t.Logf("%d checkpoints verify", len(ckpts))
}
