package trainer_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/trainer"
)

type zeroRun struct {
	losses []float64
	params map[string][]float64
	optim  int64               // rank 0's optimizer state bytes at the last step
	stats  []trainer.StepStats // rank 0's
}

// runZero trains cfg for its steps through Run on workers ranks (dp groups,
// strategy: ring, ulysses, or ulysses=U for U x ring), rank 0 into dir,
// resuming from resume when set.
func runZero(t *testing.T, cfg trainer.Config, workers, dp int, strategy string, dir trainer.RunDir, resume string) zeroRun {
	t.Helper()
	var ts []parallel.Transport
	if workers > 1 {
		ts = grpcTransports(t, workers)
	}
	out := make([]zeroRun, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for r := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d *trainer.Dist
			if ts != nil {
				d = &trainer.Dist{T: ts[r], Mesh: parallel.Mesh{World: workers, DP: dp, SP: workers / dp}, Strategy: strategy}
				if u, ok := strings.CutPrefix(strategy, "ulysses="); ok { // hybrid: ulysses=U, a ring across
					d.Strategy = "ring"
					d.Ulysses, _ = strconv.Atoi(u)
				}
			}
			tr, err := trainer.New(cfg, d)
			if err != nil {
				errs[r] = err
				return
			}
			defer tr.Close()
			if resume != "" {
				if _, err := tr.Resume(resume); err != nil {
					errs[r] = err
					return
				}
			}
			mine := dir
			if r != 0 {
				mine = ""
			}
			errs[r] = tr.Run(context.Background(), mine, func(s trainer.StepStats) {
				out[r].losses = append(out[r].losses, s.Loss)
				out[r].optim = s.Memory.Optim
				out[r].stats = append(out[r].stats, s)
			})
			out[r].params = map[string][]float64{}
			for n, p := range tr.Params.T {
				out[r].params[n] = host.ToFloat64(p)
			}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("%d workers, rank %d: %v", workers, r, err)
		}
	}
	for r := 1; r < workers; r++ { // every rank holds the same weights
		for n, want := range out[0].params {
			if !slices.Equal(out[r].params[n], want) {
				t.Fatalf("%d workers: rank %d's %s differs from rank 0's", workers, r, n)
			}
		}
	}
	return out[0]
}

// TestZeroOneIsZeroZero: with the AdamW moments split over the workers
// (parallel.zero 1), 20 steps on 2 and 4 workers (ring, Ulysses, and dp 2 x
// sp 2) give zero 0's losses and weights bitwise, with 1/W of the optimizer
// state on each worker; a run saved at zero 1 on 4 workers resumes on 2
// workers at zero 1 and on 1 worker at zero 0 within 1e-6 of going on.
func TestZeroOneIsZeroZero(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float32, 64, 2)
	cfg.Schedule.Steps, cfg.Schedule.WarmupSteps, cfg.Schedule.Decay = 20, 3, "cosine"
	for _, tc := range []struct {
		workers, dp int
		strategy    string
	}{{2, 1, "ring"}, {4, 1, "ring"}, {2, 1, "ulysses"}, {4, 2, "ring"}} {
		t.Run(fmt.Sprintf("%d-workers-dp%d-%s", tc.workers, tc.dp, tc.strategy), func(t *testing.T) {
			z0 := runZero(t, cfg, tc.workers, tc.dp, tc.strategy, trainer.RunDir(t.TempDir()), "")
			c1 := cfg
			c1.Zero = 1
			z1 := runZero(t, c1, tc.workers, tc.dp, tc.strategy, trainer.RunDir(t.TempDir()), "")
			if !slices.Equal(z1.losses, z0.losses) {
				t.Errorf("losses at zero 1 %v, zero 0 %v", z1.losses, z0.losses)
			}
			for n, want := range z0.params {
				if !slices.Equal(z1.params[n], want) {
					t.Errorf("%s differs after 20 steps", n)
				}
			}
			if ratio := float64(z1.optim) / float64(z0.optim); math.Abs(ratio-1/float64(tc.workers)) > 0.02 {
				t.Errorf("optimizer state %d bytes at zero 1, %d at zero 0: %.3f of it, want 1/%d", z1.optim, z0.optim, ratio, tc.workers)
			}
			t.Logf("optimizer state per worker: %d bytes at zero 1, %d at zero 0", z1.optim, z0.optim)
		})
	}
	t.Run("resume across zero levels", func(t *testing.T) {
		c1 := cfg
		c1.Zero, c1.CheckpointEvery = 1, 10
		dir := trainer.RunDir(filepath.Join(t.TempDir(), "run"))
		whole := runZero(t, c1, 4, 1, "ring", dir, "")
		ckpt := filepath.Join(dir.Ckpt(), checkpoint.Name(10))
		for _, tc := range []struct{ workers, zero int }{{2, 1}, {1, 0}} {
			c := cfg
			c.Zero, c.CheckpointEvery = tc.zero, 10
			got := runZero(t, c, tc.workers, 1, "ring", trainer.RunDir(filepath.Join(t.TempDir(), "run")), ckpt)
			for i, l := range got.losses {
				want := whole.losses[10+i]
				if e := math.Abs(l-want) / want; e > 1e-6 {
					t.Errorf("resumed on %d workers at zero %d, step %d: loss %.9g, uninterrupted %.9g", tc.workers, tc.zero, 11+i, l, want)
				}
			}
			for n, want := range whole.params {
				if e := relErr(got.params[n], want); e > 1e-6 {
					t.Errorf("resumed on %d workers at zero %d: %s relative error %.3g", tc.workers, tc.zero, n, e)
				}
			}
		}
	})
}
