package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/model"
)

// RunDir is the on-disk layout of one training run (DESIGN.md, "On disk").
type RunDir string

func (d RunDir) Recipe() string  { return filepath.Join(string(d), "recipe.yaml") }
func (d RunDir) Metrics() string { return filepath.Join(string(d), "metrics.jsonl") }
func (d RunDir) Final() string   { return filepath.Join(string(d), "final") }
func (d RunDir) Ckpt() string    { return filepath.Join(string(d), "ckpt") }

// Run trains until the recipe's last step, writing into dir the resolved
// recipe, one metrics.jsonl line per step, a checkpoint every CheckpointEvery
// steps and at the end (in the background: training goes on while one is
// written), and the final model as a Hugging Face folder in dir/final. onStep
// (may be nil) sees every step's stats as it ends. A cancelled ctx stops
// between pieces and returns ctx's error. With dir == "" (the other ranks of a
// parallel job) nothing is written.
//
// After Resume, Run continues the run: metrics.jsonl keeps the lines up to the
// checkpoint's step and drops those a crash left after it.
//
// After RequestStop, Run returns a *StoppedError once every worker has agreed
// on the step to stop after, with a checkpoint of that step written (even
// when the recipe writes none).
func (t *Trainer) Run(ctx context.Context, dir RunDir, onStep func(StepStats)) error {
	if dir == "" {
		for t.step < t.Config.Schedule.Steps {
			st, err := t.Step(ctx)
			if err != nil {
				return err
			}
			stop := t.stopAgreed && t.step < t.Config.Schedule.Steps
			if t.checkpointDue(stop) { // rank 0 writes it; under ZeRO every rank sends its moments
				if err := t.gatherOptim(ctx); err != nil {
					return fmt.Errorf("step %d: %w", t.step, err)
				}
			}
			if onStep != nil {
				onStep(st)
			}
			if stop {
				return &StoppedError{Step: t.step}
			}
		}
		return nil
	}
	mf, err := t.openRunDir(dir)
	if err != nil {
		return err
	}
	defer mf.Close()
	var ckpt *checkpoint.Writer
	openCkpt := func() (err error) {
		if ckpt == nil {
			ckpt, err = checkpoint.NewWriter(dir.Ckpt(), t.Config.Keep)
		}
		return err
	}
	if t.Config.CheckpointEvery > 0 {
		if err := openCkpt(); err != nil {
			return err
		}
	}
	saved := t.step // the step of the newest checkpoint (or the one resumed from)
	// Two snapshot buffers in turn: when one is filled, the write of the other
	// may be in flight, and the write before (this buffer's) has completed, as
	// Submit waits for the previous write before it starts the next.
	var bufs [2]*checkpoint.Snapshot
	var n int // checkpoints taken
	save := func() error {
		if ckpt == nil || saved == t.step {
			return nil
		}
		s, err := t.SnapshotInto(bufs[n%2])
		if err != nil {
			return err
		}
		bufs[n%2], saved = s, t.step
		n++
		return ckpt.Submit(s)
	}
	var stopped *StoppedError
	err = func() error {
		enc := json.NewEncoder(mf)
		for t.step < t.Config.Schedule.Steps {
			st, err := t.Step(ctx)
			if err != nil {
				return err
			}
			stop := t.stopAgreed && t.step < t.Config.Schedule.Steps
			if stop {
				if err := openCkpt(); err != nil {
					return err
				}
			}
			if t.checkpointDue(stop) {
				if err := t.gatherOptim(ctx); err != nil {
					return fmt.Errorf("step %d: %w", t.step, err)
				}
				if err := save(); err != nil {
					return fmt.Errorf("step %d: %w", t.step, err)
				}
				if ckpt != nil {
					st.Checkpoint = checkpoint.Name(t.step)
				}
			}
			if err := enc.Encode(st); err != nil {
				return fmt.Errorf("metrics: %w", err)
			}
			if onStep != nil {
				onStep(st)
			}
			if stop {
				stopped = &StoppedError{Step: t.step, Checkpoint: filepath.Join(dir.Ckpt(), st.Checkpoint)}
				return nil
			}
		}
		return nil
	}()
	if ckpt != nil { // the write in flight completes (or fails) before Run returns
		if werr := ckpt.Wait(); err == nil && werr != nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	if err := mf.Sync(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if stopped != nil {
		return stopped
	}
	// The final model is a plain Hugging Face folder: adapters merged in (the
	// checkpoints keep them apart, for resume and export --format peft).
	final, err := model.MergeLoRA(t.Params)
	if err != nil {
		return fmt.Errorf("save final model: %w", err)
	}
	if err := model.SaveHF(dir.Final(), final, ""); err != nil {
		return fmt.Errorf("save final model: %w", err)
	}
	for name, b := range t.tokenizerFiles() { // so that the folder loads with its tokenizer
		if err := os.WriteFile(filepath.Join(dir.Final(), name), b, 0o644); err != nil {
			return fmt.Errorf("save final model: %w", err)
		}
	}
	return nil
}

// checkpointDue reports whether the step just taken ends with a checkpoint:
// every CheckpointEvery steps and at the last, or when the run stops early.
// Every worker computes the same.
func (t *Trainer) checkpointDue(stop bool) bool {
	e := t.Config.CheckpointEvery
	return stop || (e > 0 && (t.step%e == 0 || t.step == t.Config.Schedule.Steps))
}

// RequestStop asks Run to stop after the step in progress (safe from any
// goroutine, e.g. a signal handler). In a parallel job, the workers that were
// asked tell the others with the step's loss: all stop after the same step.
func (t *Trainer) RequestStop() { t.stopAsked.Store(true) }

// StoppedError is Run's result after RequestStop: the run stopped early, after
// Step, and (rank 0) wrote the checkpoint Checkpoint, committed and verified.
type StoppedError struct {
	Step       int
	Checkpoint string // "" on the ranks that write nothing
}

func (e *StoppedError) Error() string {
	if e.Checkpoint == "" {
		return fmt.Sprintf("stopped on request after step %d", e.Step)
	}
	return fmt.Sprintf("stopped on request after step %d; checkpoint %s", e.Step, e.Checkpoint)
}

// openRunDir writes the recipe and opens metrics.jsonl for the steps to come:
// a new file for a new run, refusing a directory that holds another run; after
// Resume, the existing file cut back to the resumed step.
func (t *Trainer) openRunDir(dir RunDir) (*os.File, error) {
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	_, statErr := os.Stat(dir.Metrics())
	if statErr == nil && t.step == 0 {
		return nil, fmt.Errorf("run directory %s already holds a run (%s): choose another --out, remove it, or --resume it", dir, dir.Metrics())
	}
	if err := os.WriteFile(dir.Recipe(), t.Config.RecipeYAML, 0o644); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	if statErr != nil {
		f, err := os.OpenFile(dir.Metrics(), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("run directory: %w", err)
		}
		return f, nil
	}
	f, err := os.OpenFile(dir.Metrics(), os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	keep, err := metricsUpTo(f, t.step)
	if err == nil {
		err = f.Truncate(keep)
	}
	if err == nil {
		_, err = f.Seek(keep, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("metrics %s: %w", dir.Metrics(), err)
	}
	return f, nil
}

// metricsUpTo is the length of the prefix of a metrics.jsonl whose lines are
// steps <= step: what a resume from that step keeps.
func metricsUpTo(r io.Reader, step int) (int64, error) {
	br := bufio.NewReader(r)
	var n int64
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var st struct {
				Step *int `json:"step"`
			}
			if json.Unmarshal(line, &st) != nil || st.Step == nil || *st.Step > step {
				return n, nil
			}
			n += int64(len(line))
		}
		if err == io.EOF {
			return n, nil // a last line without its newline was cut by a crash: dropped
		}
		if err != nil {
			return 0, err
		}
	}
}

// CheckpointsHolding is the run directory whose checkpoints (RUN/ckpt, or any
// checkpoint folder, one holding a manifest) path is inside of or is, ""
// when it is in none: what a command that writes must not touch. Symbolic
// links are followed as far as path exists.
func CheckpointsHolding(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	// The deepest existing ancestor, with its links resolved, then the rest.
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			abs = filepath.Join(real, rest)
			break
		}
		if p == filepath.Dir(p) {
			break
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Stat(filepath.Join(p, checkpoint.ManifestFile)); err == nil {
			return p
		}
		if filepath.Base(p) == "ckpt" {
			run := RunDir(filepath.Dir(p))
			for _, f := range []string{run.Recipe(), run.Metrics()} {
				if _, err := os.Stat(f); err == nil {
					return p
				}
			}
		}
		if p == filepath.Dir(p) {
			return ""
		}
	}
}
