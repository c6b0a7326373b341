package trainer_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/model"
)

// TestChunkedLossEqualsUnchunked: the head computed LossChunk tokens at a time
// (chunks that do not divide the length, and of one token) gives the loss and
// every gradient of the whole at once within 1e-12 in float64 (the sums only
// regroup), plain and with LoRA, and on 2 workers.
func TestChunkedLossEqualsUnchunked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lora  bool
		chunk int
	}{
		{"chunks of 7", false, 7},
		{"chunks of 1", false, 1},
		{"lora, tied, chunks of 5", true, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parityConfig(t, dtypes.Float64, 64, 2)
			if tc.lora {
				cfg.Model.TieEmbeddings = true
				cfg.LoRA = model.LoRA{Rank: 2, Alpha: 4, Targets: []string{"q", "v"}, TrainEmbed: true, TrainNorm: true}
			}
			whole := runWorkers(t, cfg, nil, "ring")[0]
			cfg.LossChunk = tc.chunk
			for _, workers := range []int{1, 2} {
				var got result
				if workers == 1 {
					got = runWorkers(t, cfg, nil, "ring")[0]
				} else {
					got = runWorkers(t, cfg, grpcTransports(t, workers), "ring")[0]
				}
				what := fmt.Sprintf("%d worker(s)", workers)
				if e := math.Abs(got.loss-whole.loss) / whole.loss; e > 1e-12 {
					t.Errorf("%s: loss %.15g, unchunked %.15g", what, got.loss, whole.loss)
				}
				for n, want := range whole.grads {
					if e := relErr(got.grads[n], want); e > 1e-12 {
						t.Errorf("%s: %s relative error %.3g", what, n, e)
					}
				}
			}
		})
	}
}
