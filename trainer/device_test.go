package trainer_test

import (
	"context"
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/trainer"
)

// TestDeviceResidentFollowsHost: the step as it runs on a GPU (embedding,
// gradient sums, clipping and AdamW as compiled graphs; nothing through the
// host helpers), run here on the CPU backend, gives the host step's losses and
// weights. The compiled AdamW and sums are bitwise the Go ones; the global norm
// is a reduction in another order (1e-12 apart), so the weights may differ in
// the last bits after clipping, and the embedding gradient's scatter sums rows
// in another order.
func TestDeviceResidentFollowsHost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		compute dtypes.DType
		tol     float64
	}{{"float32", 0, 1e-5}, {"bfloat16 mixed", dtypes.BFloat16, 1e-3}} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(device bool) ([]float64, map[string][]float64) {
				cfg := parityConfig(t, dtypes.Float32, 64, 2)
				cfg.DeviceResident, cfg.Compute = device, tc.compute
				model.PieceTimes() // reset the counters
				tr, err := trainer.New(cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				var losses []float64
				for range 4 {
					st, err := tr.Step(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					losses = append(losses, st.Loss)
				}
				embedCalls := 0
				for _, pt := range model.PieceTimes() {
					if pt.Name == "Embed" {
						embedCalls = pt.Calls
					}
				}
				if device != (embedCalls > 0) {
					t.Fatalf("device %v: the Embed piece ran %d times", device, embedCalls)
				}
				w := map[string][]float64{}
				for name, p := range tr.Params.T {
					w[name] = host.ToFloat64(p)
				}
				return losses, w
			}
			hostLoss, hostW := run(false)
			devLoss, devW := run(true)
			for i := range hostLoss {
				if d := math.Abs(devLoss[i]-hostLoss[i]) / hostLoss[i]; !(d <= tc.tol) {
					t.Errorf("step %d: loss %.9g on the device path, %.9g on the host's (%.3g apart)", i+1, devLoss[i], hostLoss[i], d)
				}
			}
			worst := 0.0
			for name, want := range hostW {
				worst = max(worst, relErr(devW[name], want))
			}
			t.Logf("losses %v vs %v; weights at most %.3g apart (max-abs relative)", devLoss, hostLoss, worst)
			if !(worst <= tc.tol) {
				t.Errorf("weights %.3g apart after 4 steps (limit %g)", worst, tc.tol)
			}
		})
	}
}
