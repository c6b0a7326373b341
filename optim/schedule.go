package optim

import (
	"fmt"
	"math"
)

// Schedule is the learning rate over optimizer steps: linear warm-up from 0 to LR
// over WarmupSteps, then Decay ("cosine", "linear" or "constant") down to
// LR*MinLRRatio at step Steps.
type Schedule struct {
	LR          float64
	WarmupSteps int
	Steps       int
	Decay       string
	MinLRRatio  float64
}

// Validate names the first field out of range.
func (s Schedule) Validate() error {
	switch {
	case s.LR <= 0:
		return fmt.Errorf("optim: lr must be > 0, got %g", s.LR)
	case s.Steps < 1:
		return fmt.Errorf("optim: steps must be >= 1, got %d", s.Steps)
	case s.WarmupSteps < 0 || s.WarmupSteps > s.Steps:
		return fmt.Errorf("optim: warmup_steps must be in [0, steps=%d], got %d", s.Steps, s.WarmupSteps)
	case s.MinLRRatio < 0 || s.MinLRRatio > 1:
		return fmt.Errorf("optim: min_lr_ratio must be in [0, 1], got %g", s.MinLRRatio)
	}
	switch s.Decay {
	case "cosine", "linear", "constant":
		return nil
	}
	return fmt.Errorf("optim: decay must be cosine, linear or constant, got %q", s.Decay)
}

// At is the learning rate of step (0-based: the first update is step 0).
func (s Schedule) At(step int) float64 {
	if step < s.WarmupSteps {
		return s.LR * float64(step+1) / float64(s.WarmupSteps)
	}
	minLR := s.LR * s.MinLRRatio
	span := s.Steps - s.WarmupSteps
	if span <= 0 || s.Decay == "constant" {
		return s.LR
	}
	frac := math.Min(1, float64(step-s.WarmupSteps)/float64(span))
	switch s.Decay {
	case "linear":
		return s.LR - (s.LR-minLR)*frac
	default: // cosine
		return minLR + (s.LR-minLR)*0.5*(1+math.Cos(math.Pi*frac))
	}
}
