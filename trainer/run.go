package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/torusml/torus/model"
)

// RunDir is the on-disk layout of one training run (DESIGN.md, "On disk").
type RunDir string

func (d RunDir) Recipe() string  { return filepath.Join(string(d), "recipe.yaml") }
func (d RunDir) Metrics() string { return filepath.Join(string(d), "metrics.jsonl") }
func (d RunDir) Final() string   { return filepath.Join(string(d), "final") }

// Run trains for the recipe's steps, writing the resolved recipe and one
// metrics.jsonl line per step into dir, and the final model as a Hugging Face
// folder in dir/final. onStep (may be nil) sees every step's stats as it ends.
// A cancelled ctx stops between pieces and returns ctx's error. With dir == ""
// (the other ranks of a parallel job) nothing is written.
func (t *Trainer) Run(ctx context.Context, dir RunDir, onStep func(StepStats)) error {
	if dir == "" {
		for t.step < t.Config.Schedule.Steps {
			st, err := t.Step(ctx)
			if err != nil {
				return err
			}
			if onStep != nil {
				onStep(st)
			}
		}
		return nil
	}
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if _, err := os.Stat(dir.Metrics()); err == nil {
		return fmt.Errorf("run directory %s already holds a run (%s): choose another --out or remove it", dir, dir.Metrics())
	}
	if err := os.WriteFile(dir.Recipe(), t.Config.RecipeYAML, 0o644); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	mf, err := os.OpenFile(dir.Metrics(), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	defer mf.Close()
	enc := json.NewEncoder(mf)
	for t.step < t.Config.Schedule.Steps {
		st, err := t.Step(ctx)
		if err != nil {
			return err
		}
		if err := enc.Encode(st); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		if onStep != nil {
			onStep(st)
		}
	}
	if err := mf.Sync(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := model.SaveHF(dir.Final(), t.Params, ""); err != nil {
		return fmt.Errorf("save final model: %w", err)
	}
	return nil
}
