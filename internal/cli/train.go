package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/data"
	"github.com/torusml/torus/device"
	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/trainer"
)

func newTrainCmd() *cobra.Command {
	var (
		sets     []string
		out      string
		progress string
		resume   string
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
			w := cmd.ErrOrStderr()
			from, out, err := resolveResume(w, resume, out)
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join("runs", r.Name+"-"+time.Now().Format("20060102-150405"))
			}
			if from == "" {
				if _, err := os.Stat(trainer.RunDir(out).Metrics()); err == nil {
					return fmt.Errorf("run directory %s already holds a run (%s): choose another --out, remove it, or --resume it", out, trainer.RunDir(out).Metrics())
				}
			}
			choice, err := device.Resolve(r.Backend, device.Options{})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "torus: %s\n", describeChoice(choice))
			fmt.Fprintf(w, "torus: recipe %s (%s), run directory %s\n", args[0], r.Hash()[:12], out)
			printExpandedSources(w, r)
			if r.Parallel.Workers > 1 {
				return launchLocal(cmd.Context(), w, args[0], sets, out, from, r)
			}
			return train(cmd.Context(), w, r, out, from, nil)
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a recipe key: --set optim.lr=3e-4 (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "run directory (default runs/NAME-TIMESTAMP)")
	cmd.Flags().StringVar(&progress, "progress", "", "progress display: auto|bar|plain|none (default: the recipe's log.progress)")
	cmd.Flags().StringVar(&resume, "resume", "", "continue a run: RUN_DIR (its latest checkpoint), a checkpoint folder RUN_DIR/ckpt/step-N, or auto (--out's latest checkpoint, if it has one; else a fresh start)")
	return cmd
}

// resolveResume turns --resume into the checkpoint folder to load (or "") and
// the run directory to continue (out, unless --out was left empty).
func resolveResume(w io.Writer, resume, out string) (from, runDir string, err error) {
	switch {
	case resume == "":
		return "", out, nil
	case resume == "auto":
		if out == "" {
			return "", "", fmt.Errorf("--resume auto needs --out RUN_DIR: the run to continue, or to start")
		}
		ckptDir := trainer.RunDir(out).Ckpt()
		from, err := checkpoint.Latest(ckptDir)
		if errors.Is(err, checkpoint.ErrNoCheckpoint) {
			fmt.Fprintf(w, "torus: --resume auto: no checkpoint in %s yet, starting a new run\n", out)
			// A run that stopped before its first checkpoint starts over; its
			// metrics are kept aside, not overwritten.
			metrics := trainer.RunDir(out).Metrics()
			if _, err := os.Stat(metrics); err == nil {
				aside := fmt.Sprintf("%s.before-%s", metrics, time.Now().UTC().Format("20060102-150405.000"))
				if err := os.Rename(metrics, aside); err != nil {
					return "", "", fmt.Errorf("--resume auto: %w", err)
				}
				fmt.Fprintf(w, "torus: --resume auto: the metrics of the interrupted start are in %s\n", aside)
			}
			return "", out, nil
		}
		return from, out, err
	}
	if _, err := os.Stat(filepath.Join(resume, checkpoint.ManifestFile)); err == nil { // a checkpoint folder
		if out == "" { // RUN/ckpt/step-N continues RUN
			out = filepath.Dir(filepath.Dir(filepath.Clean(resume)))
		}
		return resume, out, nil
	}
	if _, err := os.Stat(resume); err != nil {
		return "", "", fmt.Errorf("--resume %s: %w", resume, err)
	}
	from, err = checkpoint.Latest(trainer.RunDir(resume).Ckpt())
	if err != nil {
		return "", "", fmt.Errorf("--resume %s: %w", resume, err)
	}
	if out == "" {
		out = resume
	}
	return from, out, nil
}

// train runs this process's trainer: the whole job alone (d == nil), or one
// rank of it. Rank 0 writes the run directory and shows progress.
func train(ctx context.Context, w io.Writer, r recipe.Recipe, out, from string, d *trainer.Dist) error {
	cfg, err := trainerConfig(r)
	if err != nil {
		return err
	}
	rank := 0
	if d != nil {
		rank = d.T.Rank()
	}
	cfg.OffloadDir = filepath.Join(out, "offload", fmt.Sprintf("rank-%02d", rank))
	if gpu, err := device.VisibleGPU(0, os.Getenv("CUDA_VISIBLE_DEVICES")); err == nil {
		cfg.GPUIndex = gpu
	}
	t, err := trainer.New(cfg, d)
	if err != nil {
		return err
	}
	defer t.Close()
	if from != "" {
		m, err := t.Resume(from)
		if err != nil {
			return fmt.Errorf("train: rank %d: %w", t.Rank(), err)
		}
		if t.Rank() == 0 {
			fmt.Fprintf(w, "torus: resuming from %s: step %d, %d tokens trained, written by %d worker(s)\n", from, m.Step, m.TokensSeen, m.World.Workers)
			if m.RecipeHash != cfg.RecipeHash {
				fmt.Fprintf(w, "torus: note: the recipe differs from the one the checkpoint was written with (%.12s, now %.12s)\n", m.RecipeHash, cfg.RecipeHash)
			}
			// Checkpoints this run wrote past the resumed step (a deliberate
			// resume from an older one) are kept aside.
			moved, err := checkpoint.SetAside(trainer.RunDir(out).Ckpt(), m.Step)
			if err != nil {
				return fmt.Errorf("train: %w", err)
			}
			for _, p := range moved {
				fmt.Fprintf(w, "torus: %s is past the resumed step: moved to %s\n", filepath.Base(p), p)
			}
		}
	}
	if t.Rank() != 0 {
		if err := t.Run(ctx, "", nil); err != nil {
			return fmt.Errorf("train: rank %d: %w", t.Rank(), err)
		}
		return nil
	}
	p := t.Params
	precision := p.DType.String()
	if cfg.Compute != 0 {
		precision = fmt.Sprintf("%s compute over %s weights", cfg.Compute, p.DType)
	}
	fmt.Fprintf(w, "torus: model %d layers, dim %d, %d heads (%d kv), %.2fM parameters, %s; seq_len %d x %d micro-batches per step, %d steps\n",
		p.Config.Layers, p.Config.Dim, p.Config.Heads, p.Config.KVHeads, float64(p.NumParams())/1e6, precision,
		r.Data.SeqLen, r.Schedule.GradAccum*r.Parallel.DP, r.Schedule.Steps)
	fmt.Fprintf(w, "torus: %s; %s\n", t.Backend().Describe(), t.DescribeDevice())
	bar := newProgress(w, r.Log.Progress, r.Log.Every, r.Schedule.Steps)
	err = t.Run(ctx, trainer.RunDir(out), bar.step)
	bar.done()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	fmt.Fprintf(w, "torus: done: %d steps in %s; %s\ntorus: metrics in %s, model in %s\n",
		t.StepNum(), time.Since(bar.start).Round(time.Second), bar.summary(), trainer.RunDir(out).Metrics(), trainer.RunDir(out).Final())
	if cfg.CheckpointEvery > 0 {
		fmt.Fprintf(w, "torus: checkpoints in %s (resume with --resume %s)\n", trainer.RunDir(out).Ckpt(), out)
	}
	return nil
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// printExpandedSources says where each data path with a $VARIABLE points: the
// same recipe reads other files under another environment ($GOROOT follows the
// go command, so another Go version is other source text), and that changes
// the run.
func printExpandedSources(w io.Writer, r recipe.Recipe) {
	for i, s := range r.Data.Sources {
		if s.Type == "passkey" || !strings.Contains(s.Path, "$") {
			continue
		}
		if p, err := data.ExpandPath(s.Path); err == nil { // an error is reported when the data opens
			fmt.Fprintf(w, "torus: data source %d (%s): %s is %s\n", i, s.Type, s.Path, p)
		}
	}
}

// describeChoice is the first line of a run: which backend, and why.
func describeChoice(c device.Choice) string {
	if c.Kind == "cuda" {
		return c.Why + ": XLA with the CUDA PJRT plugin " + c.Plugin
	}
	return c.Why + ": GoMLX's pure-Go backend"
}
