package cli

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/eval"
	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/trainer"
)

func newGenerateCmd() *cobra.Command {
	var (
		prompt, recipePath, backend string
		maxTokens                   int
		temperature, topP           float64
		seed                        int64
		noCache                     bool
	)
	cmd := &cobra.Command{
		Use:   "generate CKPT --prompt TEXT",
		Short: "Continue a prompt with a model: greedy, or sampled with a temperature and top-p",
		Long: `Continue --prompt by --max-tokens tokens, streaming the text to stdout as
it is written. CKPT is a checkpoint folder, a run directory (its latest
checkpoint, else its final model) or a Hugging Face model folder.

--temperature 0 (the default) is greedy decoding; above 0 each token is drawn
from softmax(logits / temperature), cut to the top-p nucleus. Keys and values
are cached, so each new token costs one token's work (--no-cache recomputes
the whole sequence for every token). See docs/eval.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case prompt == "":
				return errors.New("generate: --prompt is required (the text to continue)")
			case maxTokens < 1:
				return fmt.Errorf("generate: --max-tokens must be >= 1, got %d", maxTokens)
			case !(temperature >= 0) || math.IsInf(temperature, 1):
				return fmt.Errorf("generate: --temperature must be >= 0 (0: greedy), got %g", temperature)
			case !(topP > 0 && topP <= 1):
				return fmt.Errorf("generate: --top-p must be in (0, 1] (1: no cut), got %g", topP)
			}
			target, err := resolveModel(args[0])
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			tok, err := generateTokenizer(target, recipePath)
			if err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			m, err := loadEvalModel(stderr, target, backend)
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			if seed < 0 {
				seed = time.Now().UnixNano() & math.MaxInt64
			}
			cfg := eval.GenerateConfig{
				MaxTokens: maxTokens,
				Sampler:   eval.Sampler{Temperature: temperature, TopP: topP, RNG: rand.New(rand.NewPCG(uint64(seed), 0))},
				NoCache:   noCache,
			}
			start := time.Now()
			out, err := m.Generate(cmd.Context(), tok.Encode([]byte(prompt)), cfg, func(id int32) error {
				_, err := stdout.Write(tok.Decode([]int32{id}))
				return err
			})
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			d := time.Since(start)
			how := "greedy"
			if temperature > 0 {
				how = fmt.Sprintf("temperature %g, top-p %g, seed %d", temperature, topP, seed)
			}
			fmt.Fprintf(stderr, "\ntorus: %d tokens in %s (%.1f tokens/s; %s)\n", len(out), d.Round(time.Millisecond), float64(len(out))/d.Seconds(), how)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&prompt, "prompt", "", "the text to continue (required)")
	fl.IntVar(&maxTokens, "max-tokens", 200, "tokens to write")
	fl.Float64Var(&temperature, "temperature", 0, "sampling temperature; 0: greedy")
	fl.Float64Var(&topP, "top-p", 1, "nucleus sampling: draw from the most probable tokens whose probabilities sum to at least this, in (0, 1]")
	fl.Int64Var(&seed, "seed", -1, "seed of the sampling; -1: from the clock")
	fl.BoolVar(&noCache, "no-cache", false, "recompute the whole sequence for every token instead of caching keys and values")
	fl.StringVar(&recipePath, "recipe", "", "the recipe whose tokenizer to use (default RUN/recipe.yaml, else byte)")
	fl.StringVar(&backend, "backend", "auto", "compute backend: auto | cpu | cuda")
	return cmd
}

// generateTokenizer is the tokenizer of --recipe, else the one the model
// folder carries (tokenizer.json), else that of the run's recipe, else the
// byte tokenizer.
func generateTokenizer(target modelTarget, recipePath string) (data.Tokenizer, error) {
	if _, err := os.Stat(filepath.Join(target.dir, data.TokenizerFiles[0])); recipePath == "" && err == nil {
		tok, err := data.NewTokenizer(target.dir)
		if err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		return tok, nil
	}
	if recipePath == "" && target.run != "" {
		recipePath = trainer.RunDir(target.run).Recipe()
	}
	name := "byte"
	if recipePath != "" {
		r, err := recipe.Load(recipePath, nil)
		if err != nil {
			return nil, fmt.Errorf("generate: %w", recipeError(recipePath, err))
		}
		name = r.TokenizerSpec()
	}
	tok, err := data.NewTokenizer(name)
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	return tok, nil
}
