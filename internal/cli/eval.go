package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/data"
	"github.com/torusml/torus/device"
	"github.com/torusml/torus/eval"
	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/trainer"
)

// evalFlags are the flags of torus eval, before they are checked.
type evalFlags struct {
	task, out, recipe, backend string
	// ppl
	length, buckets, split string
	docs                   int
	// passkey
	lengths, depths string
	samples         int
	seed            uint64
}

// Flags that apply to one task only.
var (
	pplOnly     = []string{"length", "docs", "buckets", "split"}
	passkeyOnly = []string{"lengths", "depths", "samples", "seed"}
)

func newEvalCmd() *cobra.Command {
	var f evalFlags
	cmd := &cobra.Command{
		Use:   "eval CKPT --task ppl|passkey",
		Short: "Perplexity by position on held-out documents, or passkey retrieval accuracy by length and depth",
		Long: `Evaluate a model. CKPT is a checkpoint folder (RUN/ckpt/step-N), a run
directory (its latest checkpoint, else its final model) or a Hugging Face
model folder.

--task ppl scores the recipe's held-out documents (data.heldout), each up to
--length tokens, and prints tokens, mean NLL, bits per token and perplexity
by position bucket. The recipe is RUN/recipe.yaml, or --recipe FILE.

--task passkey hides a 5-digit key in filler text at each --depths fraction
of each --lengths length, --samples times per cell, and prints the accuracy
of retrieving it (greedy), with the mean per length; it also writes a PNG
heatmap.

Both write a JSON report under --out (default RUN/eval). See docs/eval.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEval(cmd, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.task, "task", "", "ppl | passkey (required)")
	fl.StringVar(&f.out, "out", "", "folder for the JSON report (and the passkey PNG); default RUN/eval")
	fl.StringVar(&f.recipe, "recipe", "", "the recipe whose data to score (ppl; default RUN/recipe.yaml)")
	fl.StringVar(&f.backend, "backend", "auto", "compute backend: auto | cpu | cuda")
	fl.StringVar(&f.length, "length", "", "ppl: tokens scored per document, e.g. 8k (default: the recipe's data.seq_len)")
	fl.IntVar(&f.docs, "docs", 0, "ppl: how many held-out documents (0: all)")
	fl.StringVar(&f.buckets, "buckets", "", "ppl: position bucket edges, e.g. 0,512,1k,2k (default 0,512,1k,2k,... up to --length)")
	fl.StringVar(&f.split, "split", "heldout", "ppl: heldout (the recipe's data.heldout documents) | all (every document of its sources)")
	fl.StringVar(&f.lengths, "lengths", "1k,4k,8k", "passkey: sample lengths in tokens (k = 1024)")
	fl.StringVar(&f.depths, "depths", "0,0.25,0.5,0.75,1", "passkey: where the key sits, fractions of the filler in [0, 1]")
	fl.IntVar(&f.samples, "samples", 5, "passkey: samples per (length, depth) cell")
	fl.Uint64Var(&f.seed, "seed", 1, "passkey: seed of the keys and samples")
	return cmd
}

// runEval checks the flags, resolves the model and runs the task.
func runEval(cmd *cobra.Command, arg string, f evalFlags) error {
	var wrong []string
	switch f.task {
	case "ppl":
		wrong = passkeyOnly
	case "passkey":
		wrong = pplOnly
	case "":
		return errors.New("eval: --task is required: ppl or passkey")
	default:
		return fmt.Errorf("eval: --task %q: ppl or passkey", f.task)
	}
	for _, name := range wrong {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("eval: --%s does not apply to --task %s", name, f.task)
		}
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	switch f.task {
	case "ppl":
		var cfg eval.PPLConfig
		var err error
		if f.length != "" {
			if cfg.Length, err = parseLength("--length", f.length); err != nil {
				return err
			}
			if cfg.Length < 2 {
				return fmt.Errorf("eval: --length must be >= 2 tokens, got %d", cfg.Length)
			}
		}
		if f.buckets != "" {
			if cfg.Buckets, err = parseLengths("--buckets", f.buckets, 0); err != nil {
				return err
			}
			for i, e := range cfg.Buckets {
				if i == 0 && e != 0 || i > 0 && e <= cfg.Buckets[i-1] || len(cfg.Buckets) < 2 {
					return fmt.Errorf("eval: --buckets %q: edges must start at 0 and ascend, at least two of them", f.buckets)
				}
			}
		}
		if f.docs < 0 {
			return fmt.Errorf("eval: --docs must be >= 0 (0: all), got %d", f.docs)
		}
		if f.split != "heldout" && f.split != "all" {
			return fmt.Errorf("eval: --split %q: heldout or all", f.split)
		}
		cfg.Docs, cfg.Progress = f.docs, stderr
		target, err := resolveModel(arg)
		if err != nil {
			return err
		}
		return evalPPL(cmd, stdout, stderr, target, f, cfg)
	default:
		lengths, err := parseLengths("--lengths", f.lengths, data.PasskeyMinLen)
		if err != nil {
			return err
		}
		depths, err := parseDepths(f.depths)
		if err != nil {
			return err
		}
		if f.samples < 1 {
			return fmt.Errorf("eval: --samples must be >= 1, got %d", f.samples)
		}
		cfg := eval.PasskeyConfig{Lengths: lengths, Depths: depths, Samples: f.samples, Seed: f.seed, Progress: stderr}
		target, err := resolveModel(arg)
		if err != nil {
			return err
		}
		return evalPasskey(cmd, stdout, stderr, target, f, cfg)
	}
}

func evalPPL(cmd *cobra.Command, stdout, stderr io.Writer, target modelTarget, f evalFlags, cfg eval.PPLConfig) error {
	recipePath := f.recipe
	if recipePath == "" {
		if target.run == "" {
			return fmt.Errorf("eval: --task ppl needs a recipe: %s is not in a run directory, so pass --recipe FILE (its data.sources and data.heldout choose the documents)", target.dir)
		}
		recipePath = trainer.RunDir(target.run).Recipe()
	}
	var err error
	if f.out, err = reportDir(target, f.out); err != nil { // before the data and the model
		return err
	}
	r, err := recipe.Load(recipePath, nil)
	if err != nil {
		return fmt.Errorf("eval: %w", recipeError(recipePath, err))
	}
	tc, err := trainerConfig(r)
	if err != nil {
		return fmt.Errorf("eval: recipe %s: %w", recipePath, err)
	}
	var corpus *data.Corpus
	what := "documents"
	switch f.split {
	case "heldout":
		if tc.Heldout == 0 {
			return fmt.Errorf("eval: recipe %s holds no documents out (data.heldout: 0), so the model trained on all of them; use --split all to score them anyway", recipePath)
		}
		_, corpus, err = data.OpenSplit(tc.Sources, tc.Heldout, tc.Seed)
		what = "held-out documents"
	default:
		corpus, err = data.OpenCorpus(tc.Sources)
	}
	if err != nil {
		return fmt.Errorf("eval: recipe %s: %w", recipePath, err)
	}
	tok, err := data.NewTokenizer(tc.Tokenizer)
	if err != nil {
		return fmt.Errorf("eval: recipe %s: %w", recipePath, err)
	}
	if cfg.Length == 0 {
		cfg.Length = tc.SeqLen
	}
	m, err := loadEvalModel(stderr, target, f.backend)
	if err != nil {
		return err
	}
	if tok.VocabSize() > m.Config().Vocab {
		return fmt.Errorf("eval: tokenizer %s has %d tokens but the model's vocabulary is %d", tok.Name(), tok.VocabSize(), m.Config().Vocab)
	}
	res, err := m.Perplexity(cmd.Context(), corpus, tok, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "perplexity of %s on %d %s of %s, up to %d tokens each\n", target.dir, res.Docs, what, recipePath, res.Length)
	if err := res.WriteTable(stdout); err != nil {
		return err
	}
	return writeReport(stderr, target, f, evalReport{Task: "ppl", Recipe: recipePath, Split: f.split, PPL: res})
}

func evalPasskey(cmd *cobra.Command, stdout, stderr io.Writer, target modelTarget, f evalFlags, cfg eval.PasskeyConfig) error {
	var err error
	if f.out, err = reportDir(target, f.out); err != nil { // before the model
		return err
	}
	m, err := loadEvalModel(stderr, target, f.backend)
	if err != nil {
		return err
	}
	res, err := m.Passkey(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "passkey retrieval of %s (accuracy, greedy)\n", target.dir)
	if err := res.WriteTable(stdout); err != nil {
		return err
	}
	return writeReport(stderr, target, f, evalReport{Task: "passkey", Passkey: res})
}

// evalReport is the JSON file torus eval writes.
type evalReport struct {
	Task    string              `json:"task"`
	Model   string              `json:"model"`          // the folder evaluated
	Step    *int                `json:"step,omitempty"` // a checkpoint's step
	Recipe  string              `json:"recipe,omitempty"`
	Split   string              `json:"split,omitempty"`
	Time    string              `json:"time"`
	PPL     *eval.PPLResult     `json:"ppl,omitempty"`
	Passkey *eval.PasskeyResult `json:"passkey,omitempty"`
}

// reportDir is the folder the report goes to (--out, default RUN/eval),
// checked before the model loads: it, or the nearest folder above it that
// exists (MkdirAll makes the rest), must be a folder this process can write
// in. The check creates and removes a file there, so it fails on a read-only
// file system too, and passes where root may write whatever the permissions.
func reportDir(target modelTarget, out string) (string, error) {
	if out == "" {
		if target.run == "" {
			return "", fmt.Errorf("eval: no --out: %s is not in a run directory, so say where to write the report", target.dir)
		}
		out = filepath.Join(target.run, "eval")
	}
	for p := filepath.Clean(out); ; {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			if p == filepath.Clean(out) {
				return "", fmt.Errorf("eval: --out %s: exists and is not a folder (the report is written into a folder)", out)
			}
			return "", fmt.Errorf("eval: --out %s: %s is not a folder", out, p)
		case err == nil:
			probe, err := os.CreateTemp(p, ".torus-eval-probe-*")
			if err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) { // the probe's name would only confuse
					err = pe.Err
				}
				return "", fmt.Errorf("eval: --out %s: cannot write in %s: %w", out, p, err)
			}
			probe.Close()
			os.Remove(probe.Name())
			return out, nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return "", fmt.Errorf("eval: --out %s: %w", out, err)
		}
		up := filepath.Dir(p)
		if up == p {
			return "", fmt.Errorf("eval: --out %s: no folder above it exists", out)
		}
		p = up
	}
}

// writeReport writes OUT/TASK-NAME.json (and, for passkey, .png).
func writeReport(stderr io.Writer, target modelTarget, f evalFlags, rep evalReport) error {
	out := f.out
	if out == "" {
		if target.run == "" {
			return fmt.Errorf("eval: no --out: %s is not in a run directory, so say where to write the report", target.dir)
		}
		out = filepath.Join(target.run, "eval")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("eval: --out: %w", err)
	}
	rep.Model, rep.Step, rep.Time = target.dir, target.step, time.Now().UTC().Format(time.RFC3339)
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	base := filepath.Join(out, rep.Task+"-"+target.name)
	if err := os.WriteFile(base+".json", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	written := base + ".json"
	if rep.Passkey != nil {
		var img bytes.Buffer
		if err := rep.Passkey.WritePNG(&img); err != nil {
			return err
		}
		if err := os.WriteFile(base+".png", img.Bytes(), 0o644); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		written += " and " + base + ".png"
	}
	fmt.Fprintf(stderr, "torus: wrote %s\n", written)
	return nil
}

// modelTarget is the model folder a CKPT argument names.
type modelTarget struct {
	dir  string // the folder to load
	run  string // the run directory it belongs to; "" if none
	name string // its name in report file names: step-000100, final, or the folder's
	step *int   // a checkpoint's step
}

// resolveModel turns CKPT into a model folder: a checkpoint folder (its
// manifest is checked), a Hugging Face folder (RUN/final, an export), or a run
// directory or its ckpt folder, for the latest checkpoint, else RUN/final.
func resolveModel(arg string) (modelTarget, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return modelTarget{}, fmt.Errorf("checkpoint %s: %w", arg, err)
	}
	if !fi.IsDir() {
		return modelTarget{}, fmt.Errorf("checkpoint %s: not a folder (want RUN/ckpt/step-N, a run directory or a Hugging Face model folder)", arg)
	}
	dir := filepath.Clean(arg)
	has := func(d, name string) bool { _, err := os.Stat(filepath.Join(d, name)); return err == nil }
	runOf := func(d string) string { // the run d's files belong to, if it holds a recipe
		if has(d, "recipe.yaml") {
			return d
		}
		return ""
	}
	switch {
	case has(dir, checkpoint.ManifestFile):
		c, err := checkpoint.Open(dir)
		if err != nil {
			return modelTarget{}, err
		}
		t := modelTarget{dir: dir, name: filepath.Base(dir), step: &c.Manifest.Step}
		if parent := filepath.Dir(dir); filepath.Base(parent) == "ckpt" {
			t.run = runOf(filepath.Dir(parent))
		}
		return t, nil
	case has(dir, "config.json"):
		return modelTarget{dir: dir, name: filepath.Base(dir), run: runOf(filepath.Dir(dir))}, nil
	}
	run, ckptDir := dir, trainer.RunDir(dir).Ckpt()
	if has(dir, checkpoint.LatestFile) { // RUN/ckpt itself
		run, ckptDir = filepath.Dir(dir), dir
	}
	latest, err := checkpoint.Latest(ckptDir)
	if err == nil {
		return resolveModel(latest)
	}
	if final := trainer.RunDir(run).Final(); errors.Is(err, checkpoint.ErrNoCheckpoint) && has(final, "config.json") {
		return resolveModel(final)
	}
	return modelTarget{}, fmt.Errorf("checkpoint %s: neither a checkpoint, a model folder nor a run directory with one: %w", arg, err)
}

// loadEvalModel loads the model folder and says what it loaded.
func loadEvalModel(stderr io.Writer, target modelTarget, backend string) (*eval.Model, error) {
	b, err := device.Open(backend, device.Options{})
	if err != nil {
		return nil, fmt.Errorf("eval: --backend: %w", err)
	}
	start := time.Now()
	fmt.Fprintf(stderr, "torus: %s\n", b.Describe())
	m, err := eval.Load(target.dir, b.Compute)
	if err != nil {
		return nil, err
	}
	c := m.Config()
	fmt.Fprintf(stderr, "torus: loaded %s: %d layers, dim %d, %d heads (%d kv), vocabulary %d, %.2fM parameters, in %s\n",
		target.dir, c.Layers, c.Dim, c.Heads, c.KVHeads, c.Vocab, float64(m.Params.NumParams())/1e6, time.Since(start).Round(time.Millisecond))
	return m, nil
}

// parseLength reads a token count: 4096, or 4k for 4 x 1024.
func parseLength(flag, s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	if u, ok := strings.CutSuffix(strings.ToLower(t), "k"); ok {
		t, mult = u, 1024
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > (1<<31-1)/mult {
		return 0, fmt.Errorf("eval: %s: %q is not a length (a number of tokens; k = 1024: 4k)", flag, s)
	}
	return n * mult, nil
}

// parseLengths reads a comma-separated list of lengths, each >= least.
func parseLengths(flag, s string, least int) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := parseLength(flag, part)
		if err != nil {
			return nil, err
		}
		if n < least {
			return nil, fmt.Errorf("eval: %s: %d is below %d, the shortest allowed", flag, n, least)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseDepths reads --depths: fractions in [0, 1].
func parseDepths(s string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		d, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil {
			return nil, fmt.Errorf("eval: --depths: %q is not a number", part)
		}
		if !(d >= 0 && d <= 1) {
			return nil, fmt.Errorf("eval: --depths: %g is outside [0, 1] (0: the key at the start of the filler, 1: at its end)", d)
		}
		out = append(out, d)
	}
	return out, nil
}
