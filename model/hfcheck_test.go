package model_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// TestHFCheckPython (TORUS_HF_CHECK=1) has bench/hfcheck/check.py load exports
// with Python (transformers' LlamaForCausalLM.from_pretrained where transformers
// is installed, else its torch reference) and compares its float32 logits with
// torus's forward over the params read back by LoadHF. The interpreter is
// $TORUS_HF_PYTHON, else bench/hfcheck/.venv/bin/python, else /usr/bin/python3
// (Debian's python3-torch: bench/torch/install.sh installs it).
func TestHFCheckPython(t *testing.T) {
	if os.Getenv("TORUS_HF_CHECK") != "1" {
		t.Skip("set TORUS_HF_CHECK=1 to check exports with Python (transformers, or torch)")
	}
	python := hfCheckPython(t)
	script, err := filepath.Abs("../bench/hfcheck/check.py")
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int32{1, 17, 3, 3, 30, 0, 5, 2, 29, 11, 8}
	ids := make([]string, len(tokens))
	for i, tok := range tokens {
		ids[i] = fmt.Sprint(tok)
	}
	gqaHeadDim := conventionsConfig
	gqaHeadDim.HeadDim = 8 // head_dim != hidden_size/heads: o_proj is [16, 32]
	for _, c := range []struct {
		name     string
		cfg      model.Config
		tied     bool
		dtype    string
		maxShard int64
	}{
		{"float32", conventionsConfig, false, "float32", 0},
		{"bfloat16 tied", conventionsConfig, true, "bfloat16", 0},
		{"float16 sharded", conventionsConfig, false, "float16", 3000},
		{"float32 head_dim 8 sharded tied", gqaHeadDim, true, "float32", 5000},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.TieEmbeddings = c.tied
			cfg.RopeTheta = 500000 // not LlamaConfig's default, so config.json must carry it
			p, err := model.Init(cfg, dtypes.Float32, 0.3, 5)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := model.ExportHF(dir, p, model.HFExport{DType: c.dtype, MaxShardBytes: c.maxShard}); err != nil {
				t.Fatal(err)
			}
			q, err := model.LoadHF(dir, dtypes.Float32)
			if err != nil {
				t.Fatal(err)
			}
			pieces, err := model.NewPieces(testBackend(t), q.Config)
			if err != nil {
				t.Fatal(err)
			}
			ours := host.ToFloat64(forwardLogits(t, pieces, q, tokens))

			cmd := exec.Command(python, script, dir, strings.Join(ids, ","))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
			}
			var res struct {
				Impl   string
				Logits [][]float64
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("check.py output: %v\n%s", err, out)
			}
			if len(res.Logits) != len(tokens) || len(res.Logits[0]) != cfg.Vocab {
				t.Fatalf("%s: logits %dx%d, want %dx%d", res.Impl, len(res.Logits), len(res.Logits[0]), len(tokens), cfg.Vocab)
			}
			// Both sides compute in float32 from the same weights, in different orders.
			var worst, scale float64
			for i, row := range res.Logits {
				for v, x := range row {
					worst = max(worst, math.Abs(x-ours[i*cfg.Vocab+v]))
					scale = max(scale, math.Abs(x))
				}
			}
			t.Logf("%s: max |logit difference| %.3g, max |logit| %.3g", res.Impl, worst, scale)
			if worst > 1e-5*max(scale, 1) {
				t.Errorf("%s: logits differ from torus's by up to %.3g (max |logit| %.3g)", res.Impl, worst, scale)
			}
		})
	}
}

func hfCheckPython(t *testing.T) string {
	if p := os.Getenv("TORUS_HF_PYTHON"); p != "" {
		return p
	}
	for _, p := range []string{"../bench/hfcheck/.venv/bin/python", "/usr/bin/python3"} {
		if _, err := os.Stat(p); err == nil {
			abs, err := filepath.Abs(p)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	t.Fatal("no Python: set TORUS_HF_PYTHON")
	return ""
}
