package model_test

import (
	"math"
	"testing"

	"github.com/torusml/torus/model"
)

func TestStepFLOPs(t *testing.T) {
	llama7b := model.Config{Vocab: 32000, Dim: 4096, Layers: 32, Heads: 32, KVHeads: 32, MLPDim: 11008}
	for _, tc := range []struct {
		name   string
		c      model.Config
		seqLen int
		want   float64
	}{
		// By hand: head dim 2; per token and layer 2(4·2·2 + 2·4·1·2 + 2·2·4 + 3·4·8) = 288
		// and attention 2·2·2·2·6/2 = 48; per token 2(288+48) + 2·4·10 = 752; 3·752·6.
		{"tiny", model.Config{Vocab: 10, Dim: 4, Layers: 2, Heads: 2, KVHeads: 1, MLPDim: 8}, 6, 13536},
		// head_dim given, not dim/heads: per token and layer 2(4·2·4 + 2·4·2·4 + 2·4·4 + 3·4·8) = 448,
		// attention 2·2·2·4·1/2 = 16; per token 464 + 2·4·10 = 544; 3·544·1.
		{"head_dim", model.Config{Vocab: 10, Dim: 4, Layers: 1, Heads: 2, KVHeads: 2, HeadDim: 4, MLPDim: 8}, 1, 1632},
		// PaLM's form: 6 N per token over the matmul parameters N (every layer's
		// 4 D² + 3 D F, and the head's D V), and 12 Layers D L per token for
		// attention, halved by the causal mask.
		{"llama-7b", llama7b, 4096, (6*(32*(4*4096*4096+3*4096*11008)+4096*32000) + 12*32*4096*4096/2) * 4096.0},
	} {
		if got := model.StepFLOPs(tc.c, tc.seqLen); math.Abs(got-tc.want) > 1e-12*tc.want {
			t.Errorf("%s: StepFLOPs = %g, want %g", tc.name, got, tc.want)
		}
	}
}
