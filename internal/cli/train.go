package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/trainer"
)

func newTrainCmd() *cobra.Command {
	var (
		sets     []string
		out      string
		progress string
	)
	cmd := &cobra.Command{
		Use:   "train RECIPE.yaml",
		Short: "Train or fine-tune on this machine, from a YAML recipe",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := loadRecipe(args[0], sets, progress)
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join("runs", r.Name+"-"+time.Now().Format("20060102-150405"))
			}
			w := cmd.ErrOrStderr()
			fmt.Fprintf(w, "torus: recipe %s (%s), run directory %s\n", args[0], r.Hash()[:12], out)
			if r.Parallel.Workers > 1 {
				return launchLocal(cmd.Context(), w, args[0], sets, out, r)
			}
			return train(cmd.Context(), w, r, out, nil)
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a recipe key: --set optim.lr=3e-4 (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "run directory (default runs/NAME-TIMESTAMP)")
	cmd.Flags().StringVar(&progress, "progress", "", "progress display: auto|bar|plain|none (default: the recipe's log.progress)")
	return cmd
}

// train runs this process's trainer: the whole job alone (d == nil), or one
// rank of it. Rank 0 writes the run directory and shows progress.
func train(ctx context.Context, w io.Writer, r recipe.Recipe, out string, d *trainer.Dist) error {
	cfg, err := trainerConfig(r)
	if err != nil {
		return err
	}
	t, err := trainer.New(cfg, d)
	if err != nil {
		return err
	}
	if t.Rank() != 0 {
		if err := t.Run(ctx, "", nil); err != nil {
			return fmt.Errorf("train: rank %d: %w", t.Rank(), err)
		}
		return nil
	}
	p := t.Params
	fmt.Fprintf(w, "torus: model %d layers, dim %d, %d heads (%d kv), %.2fM parameters, %s; seq_len %d x %d micro-batches per step, %d steps\n",
		p.Config.Layers, p.Config.Dim, p.Config.Heads, p.Config.KVHeads, float64(p.NumParams())/1e6, p.DType,
		r.Data.SeqLen, r.Schedule.GradAccum*r.Parallel.DP, r.Schedule.Steps)
	bar := newProgress(w, r.Log.Progress, r.Log.Every, r.Schedule.Steps)
	err = t.Run(ctx, trainer.RunDir(out), bar.step)
	bar.done()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	fmt.Fprintf(w, "torus: done: %d steps in %s; %s\ntorus: metrics in %s, model in %s\n",
		t.StepNum(), time.Since(bar.start).Round(time.Second), bar.summary(), trainer.RunDir(out).Metrics(), trainer.RunDir(out).Final())
	return nil
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
