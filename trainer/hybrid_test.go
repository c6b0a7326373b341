package trainer_test

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/trainer"
)

// runHybrid is runWorkers as ulysses x ring sequence parallelism (dp 1).
func runHybrid(t *testing.T, cfg trainer.Config, ts []parallel.Transport, ulysses int) []result {
	return runDists(t, cfg, ts, "ring", 1, func(_ int, d *trainer.Dist) { d.Ulysses = ulysses })
}

// TestHybridParity: Ulysses inside groups of neighbouring ranks and a ring
// across the groups: 4 workers as ulysses 2 x ring 2 over real gRPC, 8 as
// 2 x 4 and 4 x 2 (in-process), and kv_heads 2 with ulysses 4 x ring 2 (each
// key/value head replicated), with packed documents across shard boundaries
// and gradient accumulation 2, and under shifted sparse attention: the loss
// and every gradient equal one worker's within 1e-9 (float64) and 1e-5 (float32).
func TestHybridParity(t *testing.T) {
	for _, dc := range []struct {
		dtype dtypes.DType
		tol   float64
	}{{dtypes.Float64, 1e-9}, {dtypes.Float32, 1e-5}} {
		for _, tc := range []struct {
			workers, ulysses, kv int
			grpc                 bool
			shift                int // shifted sparse attention's groups (0: full attention)
		}{{4, 2, 4, true, 0}, {8, 2, 4, false, 0}, {8, 4, 4, false, 0}, {8, 4, 2, false, 0}, {4, 2, 4, false, 6}} {
			t.Run(fmt.Sprintf("%s/ulysses%d-ring%d-kv%d-shift%d", dc.dtype, tc.ulysses, tc.workers/tc.ulysses, tc.kv, tc.shift), func(t *testing.T) {
				cfg := parityConfig(t, dc.dtype, 64, 2)
				cfg.Model.KVHeads, cfg.ShiftGroups = tc.kv, tc.shift
				want := runWorkers(t, cfg, nil, "")[0]
				ts := parallel.NewLocal(tc.workers)
				if tc.grpc {
					ts = grpcTransports(t, tc.workers)
				}
				for r, g := range runHybrid(t, cfg, ts, tc.ulysses) {
					if e := math.Abs(g.loss-want.loss) / math.Abs(want.loss); e > dc.tol {
						t.Errorf("rank %d: loss %.12g, one worker %.12g (relative error %.3g)", r, g.loss, want.loss, e)
					}
					for name, w := range want.grads {
						if e := relErr(g.grads[name], w); e > dc.tol || math.IsNaN(e) {
							t.Errorf("rank %d: %s: relative error %.3g > %.0e", r, name, e, dc.tol)
						}
					}
				}
			})
		}
	}
}

// TestHybridResumesAsAnotherLayout: a run saved as ulysses 2 x ring 2 after 10
// of 20 steps resumes as ring 4 and as 1 worker, within 1e-6 of going on.
func TestHybridResumesAsAnotherLayout(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float32, 64, 2)
	cfg.Schedule.Steps, cfg.CheckpointEvery = 20, 10
	dir := trainer.RunDir(filepath.Join(t.TempDir(), "run"))
	whole := runZero(t, cfg, 4, 1, "ulysses=2", dir, "")
	ckpt := filepath.Join(dir.Ckpt(), checkpoint.Name(10))
	for _, tc := range []struct {
		workers  int
		strategy string
	}{{4, "ring"}, {1, "ring"}} {
		got := runZero(t, cfg, tc.workers, 1, tc.strategy, trainer.RunDir(filepath.Join(t.TempDir(), "run")), ckpt)
		for i, l := range got.losses {
			if want := whole.losses[10+i]; math.Abs(l-want)/want > 1e-6 {
				t.Errorf("resumed as %d workers %s, step %d: loss %.9g, uninterrupted %.9g", tc.workers, tc.strategy, 11+i, l, want)
			}
		}
		for n, want := range whole.params {
			if e := relErr(got.params[n], want); e > 1e-6 {
				t.Errorf("resumed as %d workers %s: %s relative error %.3g", tc.workers, tc.strategy, n, e)
			}
		}
	}
}
