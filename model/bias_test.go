package model_test

// Architectures with attention biases: Qwen2 (q, k and v) and Llama's
// attention_bias (q, k, v and o). Their folders' forward against a float64
// reference written from Hugging Face's modeling code, the export round trip,
// and the biases' gradients against finite differences.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/safetensors"
)

// biasConfigs are small models of each biased architecture: Qwen2 (tied, as
// the small Qwen2.5 are, rope_theta 1e6) and Llama with attention_bias, both
// with grouped-query attention.
var biasConfigs = []struct {
	name string
	cfg  model.Config
}{
	{"qwen2", model.Config{Vocab: 40, Dim: 24, Layers: 2, Heads: 6, KVHeads: 2, MLPDim: 32,
		RopeTheta: 1e6, NormEps: 1e-6, TieEmbeddings: true, MaxPositions: 128, QKVBias: true}},
	{"qwen2 head_dim 8", model.Config{Vocab: 40, Dim: 24, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, MLPDim: 32,
		RopeTheta: 1e6, NormEps: 1e-6, MaxPositions: 128, QKVBias: true}},
	{"llama attention_bias", model.Config{Vocab: 40, Dim: 24, Layers: 2, Heads: 6, KVHeads: 3, MLPDim: 32,
		RopeTheta: 500000, NormEps: 1e-5, MaxPositions: 128, QKVBias: true, OBias: true}},
}

// randomParams are params of cfg with every tensor random: the norms and the
// biases (which Init makes one and zero) around 1, larger than the weights, so
// that a forward that dropped the biases would be far off.
func randomParams(t testing.TB, cfg model.Config, dtype dtypes.DType, seed uint64) *model.Params {
	t.Helper()
	p, err := model.Init(cfg, dtype, 0.3, seed)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	for _, n := range p.Names() {
		if model.IsBias(n) || model.IsNorm(n) {
			v := make([]float64, p.T[n].Size())
			for i := range v {
				v[i] = 1 + rng.NormFloat64()*0.5
			}
			p.T[n] = host.FromFloat64(dtype, v, p.T[n].Shape().Dimensions...)
		}
	}
	return p
}

// hfConfigFile writes config.json for cfg as the Hugging Face config classes
// write it, by hand rather than through HFConfigJSON.
func hfConfigFile(t testing.TB, dir string, cfg model.Config) {
	t.Helper()
	m := map[string]any{
		"vocab_size": cfg.Vocab, "hidden_size": cfg.Dim, "intermediate_size": cfg.MLPDim,
		"num_hidden_layers": cfg.Layers, "num_attention_heads": cfg.Heads, "num_key_value_heads": cfg.KVHeads,
		"hidden_act": "silu", "max_position_embeddings": cfg.MaxPositions, "rms_norm_eps": cfg.NormEps,
		"rope_theta": cfg.RopeTheta, "tie_word_embeddings": cfg.TieEmbeddings, "torch_dtype": "float32",
	}
	if cfg.HeadDim > 0 {
		m["head_dim"] = cfg.HeadDim
	}
	if cfg.OBias {
		m["model_type"], m["architectures"], m["attention_bias"] = "llama", []string{"LlamaForCausalLM"}, true
	} else {
		m["model_type"], m["architectures"] = "qwen2", []string{"Qwen2ForCausalLM"}
		m["use_sliding_window"], m["sliding_window"], m["max_window_layers"] = false, 4096, 28
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), must(json.Marshal(m)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// biasFolder writes p as a Hugging Face folder by hand: config.json and one
// model.safetensors in the given dtype; it returns the folder.
func biasFolder(t testing.TB, p *model.Params, dtype string) string {
	t.Helper()
	dir := t.TempDir()
	hfConfigFile(t, dir, p.Config)
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), p.Names(), p.T, map[string]string{"format": "pt"}, dtype); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLoadBiasFolderForward: a Qwen2 (or attention_bias Llama) folder loads
// with its biases, and the pieces' forward over it equals refLogits.
func TestLoadBiasFolderForward(t *testing.T) {
	tokens := []int32{1, 17, 3, 3, 30, 0, 5, 2, 29, 11, 8, 39}
	for _, bc := range biasConfigs {
		t.Run(bc.name, func(t *testing.T) {
			p := randomParams(t, bc.cfg, dtypes.Float64, 11)
			q, err := model.LoadHF(biasFolder(t, p, ""), dtypes.Float64)
			if err != nil {
				t.Fatal(err)
			}
			if q.Config != bc.cfg {
				t.Fatalf("config %+v, want %+v", q.Config, bc.cfg)
			}
			for _, n := range p.Names() {
				if !bytes.Equal(rawBytes(p.T[n]), rawBytes(q.T[n])) {
					t.Errorf("%s differs after loading", n)
				}
			}
			pieces, err := model.NewPieces(testBackend(t), q.Config)
			if err != nil {
				t.Fatal(err)
			}
			got := host.ToFloat64(forwardLogits(t, pieces, q, tokens))
			want := refLogits(p, tokens)
			var worst, scale float64
			for i := range want {
				worst = max(worst, math.Abs(got[i]-want[i]))
				scale = max(scale, math.Abs(want[i]))
			}
			t.Logf("max |logit difference| %.3g, max |logit| %.3g", worst, scale)
			if worst > 1e-10*scale {
				t.Errorf("logits differ from the float64 reference by up to %.3g (max |logit| %.3g)", worst, scale)
			}
			if unbiased := refLogits(withoutBiases(p), tokens); relDiff(unbiased, want) < 0.05 {
				t.Errorf("the biases move the logits by %.3g only: the test would not see them dropped", relDiff(unbiased, want))
			}
		})
	}
}

// withoutBiases is p with every bias zero.
func withoutBiases(p *model.Params) *model.Params {
	q := &model.Params{Config: p.Config, DType: p.DType, T: map[string]*tensors.Tensor{}}
	for n, t := range p.T {
		if model.IsBias(n) {
			t = host.NewZeros(t.DType(), t.Shape().Dimensions...)
		}
		q.T[n] = t
	}
	return q
}

func relDiff(a, b []float64) float64 {
	var d, s float64
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
		s = max(s, math.Abs(b[i]))
	}
	return d / s
}

// refLogits is the decoder's forward in plain float64 Go, written from Hugging
// Face's LlamaForCausalLM and Qwen2ForCausalLM and nothing of torus's graphs:
// logits [L*V] of tokens at positions 0..L-1 in one causal document. A
// projection adds its bias after the matrix product, before RoPE.
func refLogits(p *model.Params, tokens []int32) []float64 {
	c := p.Config
	D, H, KH, hd, L := c.Dim, c.Heads, c.KVHeads, c.HeadDimension(), len(tokens)
	get := func(n string) []float64 {
		if t, ok := p.T[n]; ok {
			return host.ToFloat64(t)
		}
		return nil // a bias the model does not have
	}
	norm := func(x, w []float64) []float64 {
		var ms float64
		for _, v := range x {
			ms += v * v
		}
		r := 1 / math.Sqrt(ms/float64(len(x))+c.NormEps)
		out := make([]float64, len(x))
		for i := range x {
			out[i] = x[i] * r * w[i]
		}
		return out
	}
	linear := func(x, w, b []float64) []float64 { // w [out, in] as nn.Linear
		out := make([]float64, len(w)/len(x))
		for o := range out {
			for i, v := range x {
				out[o] += w[o*len(x)+i] * v
			}
			if b != nil {
				out[o] += b[o]
			}
		}
		return out
	}
	rope := func(x []float64, pos int) { // every head of x, rotate_half in place
		half := hd / 2
		for h := 0; h < len(x); h += hd {
			for i := range half {
				a := float64(pos) * math.Pow(c.RopeTheta, -2*float64(i)/float64(hd))
				x1, x2 := x[h+i], x[h+i+half]
				x[h+i], x[h+i+half] = x1*math.Cos(a)-x2*math.Sin(a), x2*math.Cos(a)+x1*math.Sin(a)
			}
		}
	}
	emb := get("model.embed_tokens.weight")
	hs := make([][]float64, L)
	for i, tok := range tokens {
		hs[i] = slices.Clone(emb[int(tok)*D : int(tok+1)*D])
	}
	for l := range c.Layers {
		w := func(s string) []float64 { return get(model.LayerParam(l, s)) }
		qs, ks, vs := make([][]float64, L), make([][]float64, L), make([][]float64, L)
		for i := range L {
			x := norm(hs[i], w(model.InputNorm))
			qs[i] = linear(x, w(model.QProj), w(model.QProjBias))
			ks[i] = linear(x, w(model.KProj), w(model.KProjBias))
			vs[i] = linear(x, w(model.VProj), w(model.VProjBias))
			rope(qs[i], i)
			rope(ks[i], i)
		}
		for i := range L {
			o := make([]float64, H*hd)
			for h := range H {
				kv := h / (H / KH) * hd
				scores := make([]float64, i+1)
				for j := range scores {
					for d := range hd {
						scores[j] += qs[i][h*hd+d] * ks[j][kv+d]
					}
					scores[j] /= math.Sqrt(float64(hd))
				}
				m := slices.Max(scores)
				var sum float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - m)
					sum += scores[j]
				}
				for j, s := range scores {
					for d := range hd {
						o[h*hd+d] += s / sum * vs[j][kv+d]
					}
				}
			}
			attn := linear(o, w(model.OProj), w(model.OProjBias))
			for d := range D {
				hs[i][d] += attn[d]
			}
			x := norm(hs[i], w(model.PostNorm))
			g, u := linear(x, w(model.GateProj), nil), linear(x, w(model.UpProj), nil)
			for f := range g {
				g[f] = g[f] / (1 + math.Exp(-g[f])) * u[f]
			}
			mlp := linear(g, w(model.DownProj), nil)
			for d := range D {
				hs[i][d] += mlp[d]
			}
		}
	}
	out := get("lm_head.weight")
	if c.TieEmbeddings {
		out = emb
	}
	var logits []float64
	for i := range L {
		logits = append(logits, linear(norm(hs[i], get("model.norm.weight")), out, nil)...)
	}
	return logits
}

// TestExportBiasRoundTrip: a Qwen2 (or attention_bias Llama) folder loaded,
// exported (one file and sharded) and loaded again gives the same config and
// bitwise the same tensors, and config.json is the architecture's.
func TestExportBiasRoundTrip(t *testing.T) {
	for _, bc := range biasConfigs {
		p := randomParams(t, bc.cfg, dtypes.Float32, 5)
		loaded, err := model.LoadHF(biasFolder(t, p, ""), dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		for _, maxShard := range []int64{0, paramBytes(p, 4) / 3} {
			t.Run(fmt.Sprintf("%s max shard %d", bc.name, maxShard), func(t *testing.T) {
				dir := t.TempDir()
				if err := model.ExportHF(dir, loaded, model.HFExport{MaxShardBytes: maxShard}); err != nil {
					t.Fatal(err)
				}
				if sharded := slices.Contains(weightFiles(t, dir), "model.safetensors.index.json"); sharded != (maxShard > 0) {
					t.Errorf("weight files %v", weightFiles(t, dir))
				}
				again, err := model.LoadHF(dir, dtypes.Float32)
				if err != nil {
					t.Fatal(err)
				}
				if again.Config != loaded.Config || len(again.T) != len(loaded.T) {
					t.Errorf("config %+v (%d tensors), exported %+v (%d)", again.Config, len(again.T), loaded.Config, len(loaded.T))
				}
				for _, n := range loaded.Names() {
					if !bytes.Equal(rawBytes(again.T[n]), rawBytes(loaded.T[n])) {
						t.Errorf("%s differs after the round trip", n)
					}
				}
				checkBiasConfigJSON(t, filepath.Join(dir, "config.json"), bc.cfg)
			})
		}
	}
}

// checkBiasConfigJSON checks config.json names the architecture of cfg with
// the fields its Hugging Face config class reads.
func checkBiasConfigJSON(t *testing.T, path string, cfg model.Config) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(readFile(t, path)), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"model_type": "qwen2", "architectures": []any{"Qwen2ForCausalLM"},
		"use_sliding_window": false, "sliding_window": nil, "max_window_layers": float64(cfg.Layers),
		"rope_theta": cfg.RopeTheta, "num_key_value_heads": float64(cfg.KVHeads), "hidden_act": "silu",
		"tie_word_embeddings": cfg.TieEmbeddings, "attention_dropout": 0.0}
	absent := []string{"attention_bias", "mlp_bias", "pretraining_tp"} // not Qwen2Config's
	if cfg.HeadDim == 0 {
		absent = append(absent, "head_dim")
	} else {
		want["head_dim"] = float64(cfg.HeadDim)
	}
	if cfg.OBias {
		want = map[string]any{"model_type": "llama", "architectures": []any{"LlamaForCausalLM"},
			"attention_bias": true, "mlp_bias": false, "rope_theta": cfg.RopeTheta}
		absent = []string{"use_sliding_window", "sliding_window"}
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || string(must(json.Marshal(got))) != string(must(json.Marshal(v))) {
			t.Errorf("config.json %s = %v, want %v", k, got, v)
		}
	}
	for _, k := range absent {
		if _, ok := m[k]; ok {
			t.Errorf("config.json has %s", k)
		}
	}
}

// TestBiasGradientsFiniteDifferences: the biases' gradients from PreAttnVJP
// and PostAttnVJP equal central differences of the forward pieces, in float64.
// f = sum(q*rq) + sum(k*rk) + sum(v*rv) for PreAttn, sum(next*r) for PostAttn,
// so the upstream gradients are rq, rk, rv and r.
func TestBiasGradientsFiniteDifferences(t *testing.T) {
	cfg := biasConfigs[2].cfg // q, k, v and o biases
	p := randomParams(t, cfg, dtypes.Float64, 2)
	pieces, err := model.NewPieces(testBackend(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	const L = 7
	rng := rand.New(rand.NewPCG(4, 4))
	random := func(dims ...int) *tensors.Tensor {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return host.FromFloat64(dtypes.Float64, v, dims...)
	}
	hd := cfg.HeadDimension()
	h, o := random(L, cfg.Dim), random(L, cfg.Heads*hd)
	rq, rk, rv, r := random(L, cfg.Heads, hd), random(L, cfg.KVHeads, hd), random(L, cfg.KVHeads, hd), random(L, cfg.Dim)
	pos := []int32{0, 1, 2, 3, 4, 5, 6}
	cos, sin := model.RopeTables(cfg, dtypes.Float64, pos)
	dot := func(a, b *tensors.Tensor) float64 {
		x, y := host.ToFloat64(a), host.ToFloat64(b)
		var s float64
		for i := range x {
			s += x[i] * y[i]
		}
		return s
	}
	w := p.Layer(1)
	f := func(w model.LayerWeights) float64 {
		q, k, v, err := pieces.PreAttn(w, h, cos, sin)
		if err != nil {
			t.Fatal(err)
		}
		next, err := pieces.PostAttn(w, h, o)
		if err != nil {
			t.Fatal(err)
		}
		return dot(q, rq) + dot(k, rk) + dot(v, rv) + dot(next, r)
	}
	pre, err := pieces.PreAttnVJP(w, h, cos, sin, rq, rk, rv)
	if err != nil {
		t.Fatal(err)
	}
	post, err := pieces.PostAttnVJP(w, h, o, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		slot **tensors.Tensor
		grad *tensors.Tensor
	}{{"q bias", &w.QBias, pre.QBias}, {"k bias", &w.KBias, pre.KBias}, {"v bias", &w.VBias, pre.VBias}, {"o bias", &w.OBias, post.OBias}} {
		base := *bc.slot
		b := host.ToFloat64(base)
		if bc.grad == nil || bc.grad.Size() != len(b) {
			t.Fatalf("%s: gradient %v, want %d values", bc.name, bc.grad, len(b))
		}
		got := host.ToFloat64(bc.grad)
		const eps = 1e-5
		fd := make([]float64, len(b))
		for i := range b {
			at := func(x float64) float64 {
				v := slices.Clone(b)
				v[i] = x
				*bc.slot = host.FromFloat64(dtypes.Float64, v, len(v))
				return f(w)
			}
			fd[i] = (at(b[i]+eps) - at(b[i]-eps)) / (2 * eps)
		}
		*bc.slot = base
		if e := relDiff(got, fd); e > 1e-8 {
			t.Errorf("%s: gradient off finite differences by %.3g (relative)", bc.name, e)
		}
	}
}
