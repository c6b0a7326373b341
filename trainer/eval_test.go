package trainer_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/trainer"
)

// TestEvalLossDuringTraining: with EvalEvery 2 the steps 2, 4 and the last (5)
// carry the loss on the held-out sequences, the training losses are bitwise
// those of a run without evaluation, and 2 and 4 workers (ring, over gRPC)
// and Ulysses give one worker's evaluation within 1e-9 (float64).
func TestEvalLossDuringTraining(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float64, 64, 1)
	cfg.Heldout, cfg.Schedule.Steps = 3, 5
	plain := evalRun(t, cfg, 1, "ring")
	cfg.EvalEvery, cfg.EvalBatches = 2, 3
	one := evalRun(t, cfg, 1, "ring")
	if !slices.Equal(one.losses, plain.losses) {
		t.Errorf("training losses with evaluation %v, without %v", one.losses, plain.losses)
	}
	if got := slices.Sorted(maps.Keys(one.eval)); !slices.Equal(got, []int{2, 4, 5}) {
		t.Fatalf("evaluated after steps %v, want 2, 4, 5", got)
	}
	for s, l := range one.eval {
		if !(l > 0 && l < 10) {
			t.Errorf("step %d: eval loss %v", s, l)
		}
	}
	t.Logf("eval losses %v", one.eval)
	for _, tc := range []struct {
		workers  int
		strategy string
	}{{2, "ring"}, {4, "ring"}, {2, "ulysses"}} {
		got := evalRun(t, cfg, tc.workers, tc.strategy)
		for s, want := range one.eval {
			if e := math.Abs(got.eval[s]-want) / want; e > 1e-9 {
				t.Errorf("%d workers %s, step %d: eval loss %.12g, one worker %.12g", tc.workers, tc.strategy, s, got.eval[s], want)
			}
		}
	}
}

type evalResult struct {
	losses []float64
	eval   map[int]float64
}

func evalRun(t *testing.T, cfg trainer.Config, workers int, strategy string) evalResult {
	t.Helper()
	var ts []parallel.Transport
	if workers > 1 {
		ts = grpcTransports(t, workers)
	}
	out := make([]evalResult, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for r := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d *trainer.Dist
			if ts != nil {
				d = &trainer.Dist{T: ts[r], Mesh: parallel.Mesh{World: workers, DP: 1, SP: workers}, Strategy: strategy}
			}
			tr, err := trainer.New(cfg, d)
			if err != nil {
				errs[r] = err
				return
			}
			defer tr.Close()
			out[r].eval = map[int]float64{}
			for range cfg.Schedule.Steps {
				st, err := tr.Step(context.Background())
				if err != nil {
					errs[r] = err
					return
				}
				out[r].losses = append(out[r].losses, st.Loss)
				if st.EvalLoss != nil {
					out[r].eval[st.Step] = *st.EvalLoss
				}
			}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("%d workers, rank %d: %v", workers, r, fmt.Errorf("%w", err))
		}
	}
	return out[0]
}
