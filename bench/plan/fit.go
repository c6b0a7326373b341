package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/torusml/torus/plan"
)

// fitCalibration fits plan.Calibration's CPU constants on the calibration
// rows of the files (fit), or takes plan.Measured as built (!fit), and prints
// the table with them. The fit: the baseline live heap, the transient's reach
// and the pool falloff by a grid search minimizing the squared relative error
// of the peak; the two efficiencies by least squares on the step times.
func fitCalibration(files []string, fit bool) error {
	var rows []row
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r row
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			rows = append(rows, r)
		}
	}
	peakErr := func(r row, k plan.Calibration) float64 {
		return float64(plan.PlanWith(r.Config, k).Total)/float64(r.MeasuredPeak) - 1
	}
	cost := func(k plan.Calibration) (sum float64, n int) {
		for _, r := range rows {
			if r.Role == "calibration" {
				e := peakErr(r, k)
				sum, n = sum+e*e, n+1
			}
		}
		return sum, n
	}
	best := plan.Measured
	if fit {
		bestCost := math.Inf(1)
		for base := int64(0); base <= 64; base++ {
			for reach := 0.80; reach <= 1.10001; reach += 0.01 {
				for falloff := 0.0; falloff <= 4.0001; falloff += 0.25 {
					k := plan.Measured
					k.BaselineLiveBytes, k.TransientReach, k.PoolFalloff = base<<20, reach, falloff
					if c, _ := cost(k); c < bestCost {
						best, bestCost = k, c
					}
				}
			}
		}
		// Step time: t x rate = (FLOPs - attention)/Efficiency + attention/AttnEfficiency,
		// least squares in the two inverses, relative to each step.
		var a11, a12, a22, b1, b2 float64
		for _, r := range rows {
			if r.Role != "calibration" || r.MeasuredStep <= 0 {
				continue
			}
			p := plan.PlanWith(r.Config, best)
			y := r.MeasuredStep * p.RateGFLOPS * 1e9
			x1, x2 := (p.FLOPs-p.AttnFLOPs)/y, p.AttnFLOPs/y
			a11, a12, a22, b1, b2 = a11+x1*x1, a12+x1*x2, a22+x2*x2, b1+x1, b2+x2
		}
		if det := a11*a22 - a12*a12; det != 0 {
			if inv1, inv2 := (b1*a22-a12*b2)/det, (a11*b2-a12*b1)/det; inv1 > 0 && inv2 > 0 {
				best.Efficiency, best.AttnEfficiency = 1/inv1, 1/inv2
			}
		}
	}
	sum, n := cost(best)
	what := "fitted on"
	if !fit {
		what = "plan.Measured, as built; rms error over"
	}
	fmt.Printf("calibration %s %d calibration rows: BaselineLiveBytes %d MiB, TransientReach %.2f, PoolFalloff %.2f (rms error %.1f%%); Efficiency %.3f, AttnEfficiency %.3f\n\n",
		what, n, best.BaselineLiveBytes>>20, best.TransientReach, best.PoolFalloff, 100*math.Sqrt(sum/float64(max(n, 1))), best.Efficiency, best.AttnEfficiency)
	for i, r := range rows {
		p := plan.PlanWith(r.Config, best)
		rows[i].PredictedPeak, rows[i].PredictedHigh, rows[i].PredictedStep, rows[i].Transient = p.Total, p.TotalHigh, p.StepSeconds, p.TransientPiece
		rows[i].ErrorPct = 100 * peakErr(r, best)
	}
	printTable(rows)
	return nil
}
