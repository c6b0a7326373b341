package checkpoint_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/checkpoint"
)

func TestWriterStreams(t *testing.T) {
	ckpt := filepath.Join(t.TempDir(), "ckpt")
	w, err := checkpoint.NewWriter(ckpt, checkpoint.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(); err != nil { // nothing in flight
		t.Fatal(err)
	}
	infos := submitAll(t, w, ckpt, 1, 2, 3, 4, 5)
	if got, want := names(infos), []string{"step-000001", "step-000002", "step-000003", "step-000004", "step-000005"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if latest, err := checkpoint.Latest(ckpt); err != nil || filepath.Base(latest) != "step-000005" {
		t.Fatalf("Latest = %s, %v", latest, err)
	}
	for _, in := range infos {
		c, err := checkpoint.Open(in.Path)
		if err == nil {
			err = c.Verify()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A failed write surfaces at the next Submit (which then writes nothing) or at Wait.
func TestWriterSurfacesErrors(t *testing.T) {
	ckpt := t.TempDir()
	w, err := checkpoint.NewWriter(ckpt, checkpoint.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	bad := snapshot(t, tinyConfig, 1)
	bad.Params = nil
	if err := w.Submit(bad); err != nil {
		t.Fatal(err)
	}
	err = w.Submit(snapshot(t, tinyConfig, 2))
	if err == nil || !strings.Contains(err.Error(), "checkpoint: save step 1: no model parameters") {
		t.Fatalf("Submit after a failed write: %v", err)
	}
	if err := w.Wait(); err != nil { // the failure was reported once; step 2 was not started
		t.Fatalf("Wait: %v", err)
	}
	if infos, _ := checkpoint.List(ckpt); len(infos) != 0 {
		t.Fatalf("written %v", names(infos))
	}

	if err := w.Submit(snapshot(t, tinyConfig, 3)); err != nil {
		t.Fatal(err)
	}
	if err := w.Submit(snapshot(t, tinyConfig, 3)); err != nil {
		t.Fatal(err)
	}
	err = w.Wait()
	if err == nil || !strings.Contains(err.Error(), "step-000003 already exists") {
		t.Fatalf("Wait after a failed write: %v", err)
	}
}

func TestRetention(t *testing.T) {
	for _, c := range []struct {
		name   string
		policy checkpoint.Policy
		steps  []int // submitted in this order; the last is latest
		want   []int
	}{
		{"keep all", checkpoint.Policy{}, []int{10, 20, 30, 40}, []int{10, 20, 30, 40}},
		{"last 2", checkpoint.Policy{KeepLast: 2}, []int{10, 20, 30, 40, 50}, []int{40, 50}},
		{"last 1", checkpoint.Policy{KeepLast: 1}, []int{10, 20, 30}, []int{30}},
		{"last 2 and every 30", checkpoint.Policy{KeepLast: 2, KeepEvery: 30}, []int{10, 20, 30, 40, 50, 60, 70, 80, 90, 100},
			[]int{30, 60, 90, 100}},
		{"every alone keeps all", checkpoint.Policy{KeepEvery: 50}, []int{10, 20, 30}, []int{10, 20, 30}},
		{"last 3 of fewer", checkpoint.Policy{KeepLast: 3}, []int{1, 2}, []int{1, 2}},
		{"step 0 is a multiple", checkpoint.Policy{KeepLast: 1, KeepEvery: 1000}, []int{0, 10, 20}, []int{0, 20}},
		// Resumed from an older checkpoint: latest names step 15, not the newest step.
		{"latest kept", checkpoint.Policy{KeepLast: 1}, []int{10, 20, 30, 15}, []int{15, 30}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ckpt := t.TempDir()
			w, err := checkpoint.NewWriter(ckpt, c.policy)
			if err != nil {
				t.Fatal(err)
			}
			infos := submitAll(t, w, ckpt, c.steps...)
			var got []int
			for _, in := range infos {
				got = append(got, in.Step)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("kept %v, want %v", got, c.want)
			}
			// The latest file names the last submitted (checkpoint.Latest would
			// take step 30 in "latest kept": a complete checkpoint past latest is
			// what a crash before latest moved leaves; a resume from an older one
			// sets the newer ones aside first, which this writer alone does not).
			latest, err := os.ReadFile(filepath.Join(ckpt, checkpoint.LatestFile))
			if want := checkpoint.Name(c.steps[len(c.steps)-1]) + "\n"; err != nil || string(latest) != want {
				t.Errorf("latest = %q, %v; want %q", latest, err, want)
			}
			if tmps, _ := filepath.Glob(filepath.Join(ckpt, "*.tmp")); len(tmps) > 0 {
				t.Errorf("leftovers %v", tmps)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []checkpoint.Policy{{KeepLast: -1}, {KeepEvery: -5}} {
		if _, err := checkpoint.NewWriter(t.TempDir(), p); err == nil || !strings.Contains(err.Error(), "must be >= 0") {
			t.Errorf("NewWriter(%+v): %v", p, err)
		}
	}
}

// Clean (and NewWriter) remove what crashes leave and nothing else.
func TestClean(t *testing.T) {
	ckpt := t.TempDir()
	done := save(t, ckpt, 10)
	var leftovers []string
	for _, d := range []string{"step-000020.tmp", "step-000005.del.tmp"} {
		path := filepath.Join(ckpt, d)
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(path, "model.safetensors.tmp"), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		leftovers = append(leftovers, path)
	}
	for _, f := range []string{"latest.tmp", "notes.tmp", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(ckpt, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	leftovers = append(leftovers, filepath.Join(ckpt, "latest.tmp"))
	slices.Sort(leftovers)

	removed, err := checkpoint.Clean(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, leftovers) {
		t.Errorf("Clean removed %v, want %v", removed, leftovers)
	}
	var left []string
	entries, _ := os.ReadDir(ckpt)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"latest", "notes.tmp", "notes.txt", "step-000010"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if latest, err := checkpoint.Latest(ckpt); err != nil || latest != done {
		t.Errorf("Latest = %s, %v", latest, err)
	}
	if removed, err := checkpoint.Clean(ckpt); err != nil || len(removed) != 0 {
		t.Errorf("second Clean: %v, %v", removed, err)
	}
	if removed, err := checkpoint.Clean(filepath.Join(ckpt, "missing")); err != nil || len(removed) != 0 {
		t.Errorf("Clean of a missing folder: %v, %v", removed, err)
	}

	if err := os.Mkdir(filepath.Join(ckpt, "step-000030.tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.NewWriter(ckpt, checkpoint.Policy{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ckpt, "step-000030.tmp")); !os.IsNotExist(err) {
		t.Errorf("NewWriter left step-000030.tmp: %v", err)
	}
}

// TestSetAside: resuming from step 2 of a run that reached step 6 moves steps
// 4 and 6 aside (kept), points latest at step 2, and lets step 4 be written again.
func TestSetAside(t *testing.T) {
	ckptDir := filepath.Join(t.TempDir(), "ckpt")
	for _, step := range []int{2, 4, 6} {
		save(t, ckptDir, step)
	}
	moved, err := checkpoint.SetAside(ckptDir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(moved) != 2 || filepath.Base(moved[0]) != "step-000004" || filepath.Base(moved[1]) != "step-000006" {
		t.Fatalf("moved %v, want step-000004 and step-000006", moved)
	}
	for _, m := range moved {
		if _, err := checkpoint.Open(m); err != nil {
			t.Errorf("set aside, %s no longer opens: %v", m, err)
		}
	}
	if latest, err := checkpoint.Latest(ckptDir); err != nil || filepath.Base(latest) != "step-000002" {
		t.Fatalf("latest %q, %v; want step-000002", latest, err)
	}
	save(t, ckptDir, 4) // the new course's step 4
	if moved, err := checkpoint.SetAside(ckptDir, 4); err != nil || moved != nil {
		t.Fatalf("nothing past step 4: moved %v, %v", moved, err)
	}
}

// submitAll streams a checkpoint of each step through w, waits, and lists ckpt.
func submitAll(t *testing.T, w *checkpoint.Writer, ckpt string, steps ...int) []checkpoint.Info {
	t.Helper()
	for _, step := range steps {
		if err := w.Submit(snapshot(t, tinyConfig, step)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	infos, err := checkpoint.List(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	return infos
}
