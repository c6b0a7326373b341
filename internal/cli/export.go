package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/spf13/cobra"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/data"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/safetensors"
	"github.com/torusml/torus/trainer"
)

func newExportCmd() *cobra.Command {
	var (
		format   string
		out      string
		dtype    string
		maxShard int64
		base     string
	)
	cmd := &cobra.Command{
		Use:   "export CKPT --format hf|peft --out DIR",
		Short: "Write a checkpoint as a Hugging Face model folder (LoRA merged) or a PEFT adapter folder (CKPT: a checkpoint folder, or a run directory for its latest)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "hf" && format != "peft" {
				return fmt.Errorf("export: --format %q: hf or peft", format)
			}
			if out == "" {
				return fmt.Errorf("export: --out DIR is required")
			}
			switch dtype {
			case "float32", "bfloat16", "float16":
			default:
				return fmt.Errorf("export: --dtype %q: float32, bfloat16 or float16", dtype)
			}
			dir, err := ckptPath(args[0])
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if held := trainer.CheckpointsHolding(out); held != "" {
				return fmt.Errorf("export: --out %s is inside %s, a run's checkpoints: writing there would overwrite or corrupt them; choose a folder outside any ckpt/", out, held)
			}
			start := time.Now()
			c, err := checkpoint.Open(dir)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if err := c.Verify(); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			// The checkpoint folder is itself a model folder; read it in its stored dtype.
			infos, _, err := safetensors.Header(filepath.Join(dir, checkpoint.ModelFile))
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			stored := dtypes.Float32
			if len(infos) > 0 && infos[0].DType == dtypes.Float64 {
				stored = dtypes.Float64
			}
			p, err := model.LoadHF(dir, stored)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if has, err := model.HasAdapters(dir); err != nil {
				return fmt.Errorf("export: %w", err)
			} else if has {
				if err := model.ReadAdapters(dir, p); err != nil {
					return fmt.Errorf("export: %w", err)
				}
			}
			switch format {
			case "peft":
				if p.LoRA == nil {
					return fmt.Errorf("export: --format peft: %s has no LoRA adapters (it was trained without lora); use --format hf", dir)
				}
				if err := model.WritePEFT(out, p, 0, base, dtype); err != nil {
					return fmt.Errorf("export: %w", err)
				}
			default:
				merged, err := model.MergeLoRA(p) // no-op without adapters
				if err != nil {
					return fmt.Errorf("export: %w", err)
				}
				if err := model.ExportHF(out, merged, model.HFExport{DType: dtype, MaxShardBytes: maxShard}); err != nil {
					return fmt.Errorf("export: %w", err)
				}
			}
			if err := copyTokenizerFiles(dir, out); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "torus: exported %s (step %d, %.2fM parameters) to %s as %s in %s\n",
				dir, c.Manifest.Step, float64(p.NumParams())/1e6, out, dtype, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "hf", "hf: a Hugging Face model folder (LlamaForCausalLM, or Qwen2ForCausalLM for a model with q/k/v biases), LoRA adapters merged into the weights | peft: adapter_config.json + adapter_model.safetensors")
	cmd.Flags().StringVar(&base, "base-model", "", "peft: base_model_name_or_path to record (the folder or hub name of the base model)")
	cmd.Flags().StringVar(&out, "out", "", "the folder to write")
	cmd.Flags().StringVar(&dtype, "dtype", "float32", "float32 | bfloat16 | float16")
	cmd.Flags().Int64Var(&maxShard, "max-shard-bytes", 0, "largest weight file; bigger models are sharded with model.safetensors.index.json (0: 5 GB, as transformers)")
	return cmd
}

// copyTokenizerFiles copies the tokenizer files the checkpoint folder from has
// (a run trained with a Hugging Face tokenizer keeps them there) into to, so
// the exported folder loads with its tokenizer.
func copyTokenizerFiles(from, to string) error {
	for _, name := range data.TokenizerFiles {
		b, err := os.ReadFile(filepath.Join(from, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
