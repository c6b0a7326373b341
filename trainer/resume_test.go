package trainer_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/trainer"
)

// leg is a stretch of training on n workers: resumed from a checkpoint (or
// fresh), `steps` optimizer steps, then a checkpoint saved into ckptDir (if set).
type leg struct {
	workers int
	from    string
	steps   int
	ckptDir string
}

type legResult struct {
	losses []float64 // rank 0's, per step
	params map[string][]float64
	ckpt   string
}

func runLeg(t *testing.T, cfg trainer.Config, l leg) legResult {
	t.Helper()
	var ts []parallel.Transport
	if l.workers > 1 {
		ts = grpcTransports(t, l.workers)
	}
	out := make([]legResult, l.workers)
	errs := make([]error, l.workers)
	var wg sync.WaitGroup
	for r := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = func() error {
				var d *trainer.Dist
				if ts != nil {
					d = &trainer.Dist{T: ts[r], Mesh: parallel.Mesh{World: l.workers, DP: 1, SP: l.workers}, Strategy: "ring"}
				}
				tr, err := trainer.New(cfg, d)
				if err != nil {
					return err
				}
				if l.from != "" {
					if _, err := tr.Resume(l.from); err != nil {
						return err
					}
				}
				for range l.steps {
					st, err := tr.Step(context.Background())
					if err != nil {
						return err
					}
					out[r].losses = append(out[r].losses, st.Loss)
				}
				out[r].params = map[string][]float64{}
				for name, p := range tr.Params.T {
					out[r].params[name] = host.ToFloat64(p)
				}
				if r == 0 && l.ckptDir != "" {
					s, err := tr.Snapshot()
					if err != nil {
						return err
					}
					out[r].ckpt, err = checkpoint.Save(l.ckptDir, s)
					return err
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return out[0]
}

// TestResumeIsExact: training 3 steps, checkpointing, and resuming in a new
// trainer for 4 more gives the loss at every step and the final weights of 7
// uninterrupted steps: bitwise on the same worker count (1 and 2, over gRPC),
// within 1e-6 relative from 2 workers onto 1 (the weights within 1e-6 of each
// tensor's largest magnitude: float32 sums in another order). The data wraps into a second,
// reshuffled epoch after the resume, over 2 interleaved lanes.
func TestResumeIsExact(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float32, 64, 2)
	cfg.Interleave = 2
	cfg.Schedule.WarmupSteps, cfg.Schedule.Decay = 2, "cosine" // the schedule's step matters
	const first, rest = 3, 4
	for _, tc := range []struct {
		before, after int
		tol           float64 // 0: bitwise
	}{{1, 1, 0}, {2, 2, 0}, {2, 1, 1e-6}} {
		t.Run(fmt.Sprintf("%d-workers-then-%d", tc.before, tc.after), func(t *testing.T) {
			whole := runLeg(t, cfg, leg{workers: tc.before, steps: first + rest})
			a := runLeg(t, cfg, leg{workers: tc.before, steps: first, ckptDir: t.TempDir()})
			b := runLeg(t, cfg, leg{workers: tc.after, from: a.ckpt, steps: rest})
			got := append(a.losses, b.losses...)
			for i, want := range whole.losses {
				if !near(got[i], want, tc.tol) {
					t.Errorf("step %d: loss %.9g, uninterrupted %.9g", i+1, got[i], want)
				}
			}
			for name, want := range whole.params {
				scale := 0.0 // parameters are compared relative to their tensor's largest magnitude
				for _, x := range want {
					scale = math.Max(scale, math.Abs(x))
				}
				for i := range want {
					if tc.tol == 0 && b.params[name][i] != want[i] || math.Abs(b.params[name][i]-want[i]) > tc.tol*scale {
						t.Errorf("%s[%d]: %.9g after resume, %.9g uninterrupted", name, i, b.params[name][i], want[i])
						break
					}
				}
			}
		})
	}
}

func near(got, want, tol float64) bool {
	if tol == 0 {
		return got == want
	}
	return math.Abs(got-want) <= tol*math.Abs(want)
}
