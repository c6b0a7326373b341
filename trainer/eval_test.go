package trainer_test

import (
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"

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

// evalRun trains cfg through Run (runZero) and keeps rank 0's losses and evaluations by step.
func evalRun(t *testing.T, cfg trainer.Config, workers int, strategy string) evalResult {
	t.Helper()
	z := runZero(t, cfg, workers, 1, strategy, trainer.RunDir(t.TempDir()), "")
	out := evalResult{losses: z.losses, eval: map[int]float64{}}
	for _, s := range z.stats {
		if s.EvalLoss != nil {
			out.eval[s.Step] = *s.EvalLoss
		}
	}
	return out
}
