package trainer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/trainer"
)

// TestRequestStopAgreesAndCheckpoints: a stop asked of one worker only (rank 1
// of 2 over gRPC, or the only one) during step 2 stops every worker after the
// same step, 3; rank 0 writes a checkpoint of it although the recipe writes
// none, and a run resumed from it gives the uninterrupted run's losses bitwise.
func TestRequestStopAgreesAndCheckpoints(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float32, 64, 1)
	cfg.Schedule.Steps = 6
	for _, workers := range []int{1, 2} {
		whole := runDirs(t, cfg, workers, -1, "")
		dir := trainer.RunDir(filepath.Join(t.TempDir(), "run"))
		part := runDirs(t, cfg, workers, 2, dir)
		for r, err := range part.errs {
			var stop *trainer.StoppedError
			if !errors.As(err, &stop) || stop.Step != 3 {
				t.Fatalf("%d workers, rank %d: %v, want a stop after step 3", workers, r, err)
			}
			if r == 0 && stop.Checkpoint != filepath.Join(dir.Ckpt(), checkpoint.Name(3)) {
				t.Errorf("rank 0 says it wrote %q", stop.Checkpoint)
			}
		}
		latest, err := checkpoint.Latest(dir.Ckpt())
		if err != nil || filepath.Base(latest) != checkpoint.Name(3) {
			t.Fatalf("%d workers: latest checkpoint %q (%v), want step 3's", workers, latest, err)
		}
		if _, err := os.Stat(dir.Final()); err == nil {
			t.Errorf("a stopped run wrote %s", dir.Final())
		}
		rest := runDirs(t, cfg, workers, -1, dir, latest)
		got := append(slices.Clone(part.losses), rest.losses...)
		if !slices.Equal(got, whole.losses) {
			t.Errorf("%d workers: stopped and resumed %.9g, uninterrupted %.9g", workers, got, whole.losses)
		}
	}
}

type dirRun struct {
	losses []float64 // rank 0's
	errs   []error
}

// runDirs runs cfg on workers ranks through Trainer.Run (rank 0 into dir, when
// set), asking the last rank to stop as step stopAt ends (-1: never). A stop is
// not a test failure: it is in errs.
func runDirs(t *testing.T, cfg trainer.Config, workers, stopAt int, dir trainer.RunDir, resume ...string) dirRun {
	t.Helper()
	var ts []parallel.Transport
	if workers > 1 {
		ts = grpcTransports(t, workers)
	}
	if dir == "" {
		dir = trainer.RunDir(filepath.Join(t.TempDir(), "run"))
	}
	out := dirRun{errs: make([]error, workers)}
	var wg sync.WaitGroup
	for r := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d *trainer.Dist
			if ts != nil {
				d = &trainer.Dist{T: ts[r], Mesh: parallel.Mesh{World: workers, DP: 1, SP: workers}, Strategy: "ring"}
			}
			tr, err := trainer.New(cfg, d)
			if err != nil {
				out.errs[r] = err
				return
			}
			defer tr.Close()
			if len(resume) > 0 {
				if _, err := tr.Resume(resume[0]); err != nil {
					out.errs[r] = err
					return
				}
			}
			mine := dir
			if r != 0 {
				mine = ""
			}
			out.errs[r] = tr.Run(context.Background(), mine, func(s trainer.StepStats) {
				if r == 0 {
					out.losses = append(out.losses, s.Loss)
				}
				if r == workers-1 && s.Step == stopAt {
					tr.RequestStop()
				}
			})
		}()
	}
	wg.Wait()
	for r, err := range out.errs {
		var stop *trainer.StoppedError
		if err != nil && !errors.As(err, &stop) {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return out
}

// TestNonFiniteStepStopsOrSkips: a step whose loss goes non-finite (a learning
// rate that blows the weights up) applies nothing: with on_nonfinite stop the
// run ends with an error naming the step and the first gradient to go bad, and
// the last checkpoint, the step before, holds finite weights and verifies;
// with skip the steps are written to metrics.jsonl (loss null, skipped) and
// counted until more than the limit come in a row.
func TestNonFiniteStepStopsOrSkips(t *testing.T) {
	for _, tc := range []struct {
		name      string
		skip      bool
		wantStep  int // the step the error names
		wantLines int // metrics lines written
	}{
		{"stop", false, 2, 1},
		{"skip 2", true, 4, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parityConfig(t, dtypes.Float32, 64, 1)
			cfg.Schedule.LR, cfg.MaxGradNorm, cfg.CheckpointEvery = 1e30, 0, 1
			cfg.SkipNonFinite, cfg.NonFiniteLimit = tc.skip, 2
			tr, err := trainer.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			dir := trainer.RunDir(filepath.Join(t.TempDir(), "run"))
			err = tr.Run(context.Background(), dir, nil)
			var nf *trainer.NonFiniteError
			if !errors.As(err, &nf) {
				t.Fatalf("run with lr 1e30: %v, want a non-finite step", err)
			}
			t.Logf("%v", err)
			if nf.Step != tc.wantStep || !strings.Contains(err.Error(), fmt.Sprintf("step %d: non-finite", tc.wantStep)) || nf.Param == "" ||
				!strings.Contains(err.Error(), nf.Param) {
				t.Errorf("error %q (step %d, param %q), want step %d and the parameter named", err, nf.Step, nf.Param, tc.wantStep)
			}
			lines := strings.Split(strings.TrimSpace(readFile(t, dir.Metrics())), "\n")
			if len(lines) != tc.wantLines {
				t.Errorf("%d metrics lines, want %d:\n%s", len(lines), tc.wantLines, strings.Join(lines, "\n"))
			}
			for _, l := range lines[1:] {
				if !strings.Contains(l, `"loss":null`) || !strings.Contains(l, `"skipped":true`) {
					t.Errorf("skipped step's line %s: want loss null and skipped true", l)
				}
			}
			latest, err := checkpoint.Latest(dir.Ckpt())
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(latest) != checkpoint.Name(nf.Step-1) {
				t.Errorf("latest %s, want the step before the bad one (%d)", latest, nf.Step-1)
			}
			c, err := checkpoint.Open(latest)
			if err != nil {
				t.Fatal(err)
			}
			p, _, err := c.Load(dtypes.Float32) // verifies every checksum
			if err != nil {
				t.Fatal(err)
			}
			for n, v := range p.T {
				if i := host.FirstNonFinite(v); i >= 0 {
					t.Errorf("checkpoint %s: %s[%d] is not finite", latest, n, i)
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
