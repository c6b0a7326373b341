package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/data"
	"github.com/torusml/torus/device"
	"github.com/torusml/torus/plan"
	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/runlog"
	"github.com/torusml/torus/trainer"
)

func newTrainCmd() *cobra.Command {
	var (
		sets     []string
		out      string
		progress string
		resume   string
		metrics  string
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
			from, out, restart, err := resolveResume(w, resume, out)
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join("runs", r.Name+"-"+time.Now().Format("20060102-150405"))
			}
			// The run directory is this run's before anything is written to it.
			lock, err := trainer.RunDir(out).Lock("torus train " + args[0])
			if err != nil {
				return err
			}
			defer lock.Unlock()
			if lock.Stale != nil {
				fmt.Fprintf(w, "torus: %s was locked by %s, which is gone: taking it over\n", out, lock.Stale)
			}
			if restart {
				if err := setMetricsAside(w, out); err != nil {
					return err
				}
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
				return launchLocal(cmd.Context(), w, args[0], sets, out, from, metrics, r)
			}
			exp, err := serveMetrics(w, metrics, 0)
			if err != nil {
				return err
			}
			defer exp.Close()
			return train(cmd.Context(), w, r, out, from, nil, exp)
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a recipe key: --set optim.lr=3e-4 (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "run directory (default runs/NAME-TIMESTAMP)")
	cmd.Flags().StringVar(&progress, "progress", "", "progress display: auto|bar|plain|none (default: the recipe's log.progress)")
	cmd.Flags().StringVar(&resume, "resume", "", "continue a run: RUN_DIR (its latest checkpoint), a checkpoint folder RUN_DIR/ckpt/step-N, or auto (--out's latest checkpoint, if it has one; else a fresh start)")
	cmd.Flags().StringVar(&metrics, "metrics-addr", "", "serve Prometheus metrics of the run at http://HOST:PORT/metrics (rank 0's, with several workers)")
	return cmd
}

// resolveResume turns --resume into the checkpoint folder to load (or "") and
// the run directory to continue (out, unless --out was left empty). It writes
// nothing: restart says that --resume auto found no checkpoint, and the
// metrics of the interrupted start are to be set aside (setMetricsAside) once
// the directory is locked.
func resolveResume(w io.Writer, resume, out string) (from, runDir string, restart bool, err error) {
	switch {
	case resume == "":
		return "", out, false, nil
	case resume == "auto":
		if out == "" {
			return "", "", false, fmt.Errorf("--resume auto needs --out RUN_DIR: the run to continue, or to start")
		}
		ckptDir := trainer.RunDir(out).Ckpt()
		from, err := checkpoint.Latest(ckptDir)
		if errors.Is(err, checkpoint.ErrNoCheckpoint) {
			return "", out, true, nil
		}
		return from, out, false, err
	}
	if _, err := os.Stat(filepath.Join(resume, checkpoint.ManifestFile)); err == nil { // a checkpoint folder
		if out == "" { // RUN/ckpt/step-N continues RUN
			out = filepath.Dir(filepath.Dir(filepath.Clean(resume)))
		}
		return resume, out, false, nil
	}
	if _, err := os.Stat(resume); err != nil {
		return "", "", false, fmt.Errorf("--resume %s: %w", resume, err)
	}
	from, err = checkpoint.Latest(trainer.RunDir(resume).Ckpt())
	if err != nil {
		return "", "", false, fmt.Errorf("--resume %s: %w", resume, err)
	}
	if out == "" {
		out = resume
	}
	return from, out, false, nil
}

// setMetricsAside keeps the metrics of a run that stopped before its first
// checkpoint (--resume auto starts it over) rather than overwriting them.
func setMetricsAside(w io.Writer, out string) error {
	fmt.Fprintf(w, "torus: --resume auto: no checkpoint in %s yet, starting a new run\n", out)
	metrics := trainer.RunDir(out).Metrics()
	if _, err := os.Stat(metrics); err != nil {
		return nil
	}
	aside := fmt.Sprintf("%s.before-%s", metrics, time.Now().UTC().Format("20060102-150405.000"))
	if err := os.Rename(metrics, aside); err != nil {
		return fmt.Errorf("--resume auto: %w", err)
	}
	fmt.Fprintf(w, "torus: --resume auto: the metrics of the interrupted start are in %s\n", aside)
	return nil
}

// train runs this process's trainer: the whole job alone (d == nil), or one
// rank of it. Rank 0 writes the run directory and shows progress. exp (nil:
// none) exports this rank's steps.
func train(ctx context.Context, w io.Writer, r recipe.Recipe, out, from string, d *trainer.Dist, exp *runlog.Exporter) error {
	cfg, err := trainerConfig(r)
	if err != nil {
		return err
	}
	rank := 0
	if d != nil {
		rank = d.T.Rank()
	}
	if err := fitsMachine(r, cfg); err != nil {
		return err
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
	onStopSignal(ctx, func(syscall.Signal) { t.RequestStop() })
	if from != "" {
		m, err := t.Resume(from)
		if err != nil {
			return fmt.Errorf("train: rank %d: %w", t.Rank(), err)
		}
		exp.Resumed(m.Step, modTime(filepath.Join(from, checkpoint.ManifestFile)))
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
		if err := t.Run(ctx, "", observe(runlog.NewWatch(w, exp), nil)); err != nil {
			return stopped(ctx, err, fmt.Sprintf("rank %d", t.Rank()), out)
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
	var tb *runlog.TensorBoard
	if r.Log.TensorBoard {
		if tb, err = runlog.OpenTensorBoard(filepath.Join(out, "tensorboard")); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		defer tb.Close()
		fmt.Fprintf(w, "torus: TensorBoard events in %s\n", tb.Path())
	}
	bar := newProgress(w, r.Log.Progress, r.Log.Every, r.Schedule.Steps)
	err = t.Run(ctx, trainer.RunDir(out), observe(runlog.NewWatch(w, exp, tb), bar.step))
	bar.done()
	if err != nil {
		return stopped(ctx, err, "", out)
	}
	fmt.Fprintf(w, "torus: done: %d steps in %s; %s\ntorus: metrics in %s, model in %s\n",
		t.StepNum(), time.Since(bar.start).Round(time.Second), bar.summary(), trainer.RunDir(out).Metrics(), trainer.RunDir(out).Final())
	if cfg.CheckpointEvery > 0 {
		fmt.Fprintf(w, "torus: checkpoints in %s (resume with --resume %s)\n", trainer.RunDir(out).Ckpt(), out)
	}
	return nil
}

// stopped is the error a run that did not finish returns: after a graceful
// stop on a signal, what was saved and how to resume (Main exits 128+N);
// after a non-finite step, the same and what to change.
func stopped(ctx context.Context, err error, rank, out string) error {
	prefix := "train: "
	if rank != "" {
		prefix = "train: " + rank + ": "
	}
	resume := fmt.Sprintf("torus train %s --resume %s", trainer.RunDir(out).Recipe(), out)
	var stop *trainer.StoppedError
	if errors.As(err, &stop) {
		sig := receivedSignal(ctx)
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		msg := fmt.Sprintf("%sstopped on %s after step %d", prefix, signalName(sig), stop.Step)
		if stop.Checkpoint != "" {
			msg += fmt.Sprintf("; checkpoint %s holds it (weights, optimizer, data position)\ntorus: resume with: %s", stop.Checkpoint, resume)
		}
		return &signalStop{sig: sig, msg: msg}
	}
	var nf *trainer.NonFiniteError
	if errors.As(err, &nf) && rank == "" {
		msg := fmt.Sprintf("%s%v", prefix, err)
		if latest, lerr := checkpoint.Latest(trainer.RunDir(out).Ckpt()); lerr == nil {
			msg += fmt.Sprintf("\ntorus: nothing of step %d was applied or saved; the latest checkpoint, %s, holds finite weights", nf.Step, latest)
			msg += fmt.Sprintf("\ntorus: lower optim.lr (or set optim.on_nonfinite: skip) and resume with: %s", resume)
		} else {
			msg += fmt.Sprintf("\ntorus: nothing of step %d was applied; no checkpoint was written before it", nf.Step)
		}
		return errors.New(msg)
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// fitsMachine refuses, before anything is allocated, a model trained from
// scratch on the CPU whose float32 weights alone exceed this machine's memory
// (a typo in model.layers or model.dim would otherwise allocate until the
// machine runs out). torus plan says what fits.
func fitsMachine(r recipe.Recipe, cfg trainer.Config) error {
	if cfg.From != "" || r.Backend == "cuda" {
		return nil
	}
	total, err := memInfo("MemTotal")
	if err != nil {
		return nil // not Linux: nothing to compare with
	}
	n := plan.NumParams(cfg.Model)
	if need := n * int64(cfg.DType.Size()); need > total {
		return fmt.Errorf("train: model.dim %d x model.layers %d (vocab %d, mlp_dim %d) is %.3gB parameters: their weights alone take %.1f GiB, and this machine has %.1f GiB (torus plan %s says what fits)",
			cfg.Model.Dim, cfg.Model.Layers, cfg.Model.Vocab, cfg.Model.MLPDim, float64(n)/1e9, float64(need)/(1<<30), float64(total)/(1<<30), "RECIPE")
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

// serveMetrics serves rank's Prometheus metrics on addr (--metrics-addr); none
// (nil) when addr is "".
func serveMetrics(w io.Writer, addr string, rank int) (*runlog.Exporter, error) {
	if addr == "" {
		return nil, nil
	}
	exp, err := runlog.ServeMetrics(addr, rank)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "torus: Prometheus metrics at http://%s/metrics\n", exp.Addr())
	return exp, nil
}

// observe is the step callback: show (nil: nothing) and then the watchers.
func observe(watch *runlog.Watch, show func(trainer.StepStats)) func(trainer.StepStats) {
	return func(s trainer.StepStats) {
		if show != nil {
			show(s)
		}
		watch.Observe(s)
	}
}

// modTime is when path was last written (zero if it cannot be read).
func modTime(path string) time.Time {
	if fi, err := os.Stat(path); err == nil {
		return fi.ModTime()
	}
	return time.Time{}
}
