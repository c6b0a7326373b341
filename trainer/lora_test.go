package trainer_test

import (
	"context"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/trainer"
)

// randomizeB gives every lora_B random values of standard deviation std: fresh
// adapters have B = 0, which makes every dA zero and would let a wrong dA pass.
func randomizeB(p *model.Params, seed uint64, std float64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, n := range p.AdapterNames() {
		if strings.HasSuffix(n, "lora_B.weight") {
			t := p.T[n]
			v := make([]float64, t.Size())
			for i := range v {
				v[i] = rng.NormFloat64() * std
			}
			p.T[n] = host.FromFloat64(p.DType, v, t.Shape().Dimensions...)
		}
	}
}

// TestLoRAGradientsMatchFloat64Reference: with adapters, the gradients the
// schedule computes are exactly those of what trains (adapters, and embed/norms
// when asked), and equal autodiff of the plain float64 model whose targeted
// weights are W + s B A; the frozen weights get no gradient at all.
func TestLoRAGradientsMatchFloat64Reference(t *testing.T) {
	backend := testBackend(t)
	all := []string{"q", "k", "v", "o", "gate", "up", "down"}
	cases := []struct {
		name         string
		dtype        dtypes.DType
		tol          float64
		tied, keep   bool
		targets      []string
		embed, norms bool
		qkvB, oB     bool         // frozen attention biases (Qwen2's; Llama's attention_bias)
		mixed        dtypes.DType // Config.Compute: bf16 mixed precision over float32 weights
	}{
		{"float64 every target, embed and norms", dtypes.Float64, 1e-9, false, false, all, true, true, false, false, 0},
		{"float64 q and v only", dtypes.Float64, 1e-9, false, false, []string{"v", "q"}, false, false, false, false, 0},
		{"float64 tied, embed trains", dtypes.Float64, 1e-9, true, false, []string{"o", "down", "gate"}, true, false, false, false, 0},
		{"float64 keep attention, norms", dtypes.Float64, 1e-9, false, true, []string{"k", "up"}, false, true, false, false, 0},
		{"float32", dtypes.Float32, 1e-4, false, false, all, true, true, false, false, 0},
		{"float64 qwen2 biases, every target, norms", dtypes.Float64, 1e-9, true, false, all, false, true, true, false, 0},
		{"float64 attention_bias, q and o", dtypes.Float64, 1e-9, false, false, []string{"q", "o"}, false, false, true, true, 0},
		// bf16 mixed precision, as TestGradientsMatchFloat64Reference's bf16 cases
		// but a little looser: layer 0's q_proj gradient is the noisiest (through
		// two softmaxes), and on these merged weights the plain bf16 pieces give
		// it 9.3% and the dA it implies (s B^T dW) 9.8% (measured), as the LoRA
		// pieces' own dA does.
		{"bfloat16 mixed every target, embed and norms", dtypes.Float32, 1.2e-1, false, false, all, true, true, false, false, dtypes.BFloat16},
		{"bfloat16 mixed tied keep attention, q and v", dtypes.Float32, 1.2e-1, true, true, []string{"q", "v"}, false, false, false, false, dtypes.BFloat16},
		{"bfloat16 mixed attention_bias, every target, norms", dtypes.Float32, 1.2e-1, false, false, all, false, true, true, true, dtypes.BFloat16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := model.Config{Vocab: 32, Dim: 32, Layers: 2, Heads: 4, KVHeads: 2, MLPDim: 48,
				RopeTheta: 10000, NormEps: 1e-5, TieEmbeddings: tc.tied, QKVBias: tc.qkvB, OBias: tc.oB, Compute: tc.mixed}
			lora := model.LoRA{Rank: 4, Alpha: 6, Targets: tc.targets, TrainEmbed: tc.embed, TrainNorm: tc.norms}
			rng := rand.New(rand.NewPCG(7, 7))
			b := packedBatch(rng, cfg.Vocab, 11, 13, 7)
			ref64, err := model.Init(cfg, dtypes.Float64, 0.3, 3)
			if err != nil {
				t.Fatal(err)
			}
			randomizeBiases(ref64, 4)
			if err := model.AddLoRA(ref64, lora, 5); err != nil {
				t.Fatal(err)
			}
			// Under bf16 a small B: B A then perturbs W as a trained adapter does, and
			// the merged model stays as well conditioned as the one the plain bf16
			// cases check (with std 0.2, s B A is the size of W, and the plain bf16
			// pieces on those merged weights are off by up to 30% as much as these).
			bStd := 0.2
			if tc.mixed != 0 {
				bStd = 0.05
			}
			randomizeB(ref64, 9, bStd)
			params := &model.Params{Config: cfg, DType: tc.dtype, T: map[string]*tensors.Tensor{}, LoRA: ref64.LoRA}
			for n, v := range ref64.T {
				params.T[n] = host.FromFloat64(tc.dtype, host.ToFloat64(v), v.Shape().Dimensions...)
			}
			pieces, err := model.NewPieces(backend, cfg)
			if err != nil {
				t.Fatal(err)
			}
			lp, err := model.NewLoRAPieces(backend, cfg, *params.LoRA)
			if err != nil {
				t.Fatal(err)
			}
			eng := &trainer.Engine{Pieces: pieces, LoRA: lp, Params: params, Store: trainer.NewKeepStore(), KeepAttention: tc.keep,
				Attn: &model.BlockAttention{P: pieces, BlockQ: 8, BlockK: 5}}
			grads := trainer.NewGrads(params)
			trainable := params.Trainable()
			if got := slices.Sorted(maps.Keys(grads)); !slices.Equal(got, slices.Sorted(slices.Values(trainable))) {
				t.Fatalf("gradient accumulators %v, want exactly the trainable %v", got, trainable)
			}
			loss, err := eng.ForwardBackward(context.Background(), b, 1/float64(b.NumTargets()), grads)
			if err != nil {
				t.Fatal(err)
			}

			base := cfg.ParamNames()
			inputs := append(slices.Clone(base), ref64.AdapterNames()...)
			s := lora.Scale()
			ref, err := NewExec(backend, func(in []*Node) []*Node {
				byName := map[string]*Node{}
				for i, n := range inputs {
					byName[n] = in[i]
				}
				eff := make([]*Node, len(base))
				for i, n := range base {
					eff[i] = byName[n]
					if a, ok := byName[strings.TrimSuffix(n, ".weight")+".lora_A.weight"]; ok {
						bm := byName[strings.TrimSuffix(n, ".weight")+".lora_B.weight"]
						eff[i] = Add(eff[i], MulScalar(Einsum("or,ri->oi", bm, a), s))
					}
				}
				k := len(inputs)
				l := referenceLoss(cfg, base, eff, in[k], in[k+1], in[k+2], in[k+3], in[k+4], in[k+5])
				wrt := make([]*Node, len(trainable))
				for i, n := range trainable {
					wrt[i] = byName[n]
				}
				return append([]*Node{l}, Gradient(l, wrt...)...)
			})
			if err != nil {
				t.Fatal(err)
			}
			worst := checkReference(t, ref, ref64, inputs, b, loss, grads, trainable, tc.tol)
			t.Logf("%d trainable of %d tensors, worst relative error %.3g (tolerance %.0e)", len(trainable), len(params.T), worst, tc.tol)
			for _, n := range trainable {
				if g := host.ToFloat64(grads[n]); !slices.ContainsFunc(g, func(x float64) bool { return x != 0 }) {
					t.Errorf("%s: the gradient is all zero", n)
				}
				if grads[n].DType() != tc.dtype {
					t.Errorf("%s: gradient in %s, want the parameters' %s", n, grads[n].DType(), tc.dtype)
				}
			}
			if tc.mixed != 0 && worst < 1e-4 {
				t.Errorf("worst relative error %.3g: as exact as float32, so the matmuls did not run in %s", worst, tc.mixed)
			}
		})
	}
}

// TestLoRAStateIsAdapterSized: with adapters the gradient buffers and AdamW's
// moments are those of the adapters (plus what lora.trainable names), not the
// model's; after training steps the frozen weights are bitwise what they were.
func TestLoRAStateIsAdapterSized(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lora  model.LoRA
		extra func(name string) bool // base weights that train
	}{
		{"adapters only", model.LoRA{Rank: 2, Alpha: 4, Targets: []string{"q", "v"}}, func(string) bool { return false }},
		{"with embed and norms", model.LoRA{Rank: 4, Alpha: 8, Targets: []string{"q", "k", "v", "o"}, TrainEmbed: true, TrainNorm: true},
			func(n string) bool { return model.IsEmbedding(n) || model.IsNorm(n) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parityConfig(t, dtypes.Float32, 64, 1)
			cfg.LoRA = tc.lora
			tr, err := trainer.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			before := map[string][]float64{}
			var adapterScalars, extraScalars, modelScalars int
			for n, v := range tr.Params.T {
				before[n] = host.ToFloat64(v)
				switch {
				case strings.Contains(n, ".lora_"):
					adapterScalars += v.Size()
				default:
					modelScalars += v.Size()
					if tc.extra(n) {
						extraScalars += v.Size()
					}
				}
			}
			var st trainer.StepStats
			for range 3 {
				if st, err = tr.Step(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			trainedBytes := int64(4 * (adapterScalars + extraScalars))
			if st.Memory.Optim != 2*trainedBytes {
				t.Errorf("optimizer state %d bytes, want 2 moments x %d bytes of trained parameters (the model has %d bytes)",
					st.Memory.Optim, trainedBytes, 4*modelScalars)
			}
			if st.Memory.Grads != trainedBytes {
				t.Errorf("gradient buffers %d bytes, want %d", st.Memory.Grads, trainedBytes)
			}
			for n, v := range tr.Params.T {
				now := host.ToFloat64(v)
				moved := !slices.Equal(now, before[n])
				trains := strings.Contains(n, ".lora_") || tc.extra(n)
				if trains != moved {
					t.Errorf("%s: trains %v but changed %v after 3 steps", n, trains, moved)
				}
			}
			t.Logf("optimizer state %d bytes for %d adapter + %d base scalars; the model has %d scalars",
				st.Memory.Optim, adapterScalars, extraScalars, modelScalars)
		})
	}
}

// TestLoRAParallelParity: adapters train the same on 2 and 4 workers (ring
// and Ulysses over real gRPC) as on one.
func TestLoRAParallelParity(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float64, 64, 2)
	cfg.LoRA = model.LoRA{Rank: 3, Alpha: 6, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, TrainEmbed: true, TrainNorm: true}
	one := runWorkers(t, cfg, nil, "ring")[0]
	for _, tc := range []struct {
		workers  int
		strategy string
	}{{2, "ring"}, {4, "ring"}, {2, "ulysses"}} {
		got := runWorkers(t, cfg, grpcTransports(t, tc.workers), tc.strategy)[0]
		if e := math.Abs(got.loss-one.loss) / one.loss; e > 1e-9 {
			t.Errorf("%d workers %s: loss %.12g, one worker %.12g", tc.workers, tc.strategy, got.loss, one.loss)
		}
		if len(got.grads) != len(one.grads) {
			t.Fatalf("%d gradients, one worker %d", len(got.grads), len(one.grads))
		}
		for n, want := range one.grads {
			if e := relErr(got.grads[n], want); e > 1e-9 {
				t.Errorf("%d workers %s: %s relative error %.3g", tc.workers, tc.strategy, n, e)
			}
		}
	}
}

// TestLoRAResumeIsExact: a run with adapters checkpointed after 2 steps and
// resumed (on 2 workers, then on 1) continues bitwise; the checkpoint holds the
// adapters as a PEFT adapter beside the base model, and refuses a recipe with
// other adapters.
func TestLoRAResumeIsExact(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float32, 64, 1)
	cfg.LoRA = model.LoRA{Rank: 2, Alpha: 4, Targets: []string{"q", "v", "down"}, TrainNorm: true}
	for _, workers := range []int{1, 2} {
		whole := runLeg(t, cfg, leg{workers: workers, steps: 5})
		a := runLeg(t, cfg, leg{workers: workers, steps: 2, ckptDir: t.TempDir()})
		b := runLeg(t, cfg, leg{workers: workers, from: a.ckpt, steps: 3})
		got := append(a.losses, b.losses...)
		for i, want := range whole.losses {
			if got[i] != want {
				t.Errorf("%d workers, step %d: loss %.9g, uninterrupted %.9g", workers, i+1, got[i], want)
			}
		}
		for name, want := range whole.params {
			if !slices.Equal(b.params[name], want) {
				t.Errorf("%d workers: %s differs after resume", workers, name)
			}
		}
		if workers == 1 {
			other := cfg
			other.LoRA.Rank = 4
			tr, err := trainer.New(other, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Resume(a.ckpt); err == nil || !strings.Contains(err.Error(), "adapters") {
				t.Errorf("resume with rank 4 from a rank 2 checkpoint: %v, want a refusal naming the adapters", err)
			}
		}
	}
}

// TestLoRABF16TrainingLowersLoss: LoRA under bf16 mixed precision (float32
// master weights and adapters, bf16 matmuls) trains: a few steps lower the
// loss, the adapters move and stay float32, the frozen weights do not move, and
// the losses track a float32-compute run of the same recipe.
func TestLoRABF16TrainingLowersLoss(t *testing.T) {
	run := func(compute dtypes.DType) ([]float64, map[string][]float64, *model.Params) {
		cfg := parityConfig(t, dtypes.Float32, 64, 1)
		cfg.Compute = compute
		cfg.Schedule.LR = 1e-2
		cfg.LoRA = model.LoRA{Rank: 4, Alpha: 8, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, TrainNorm: true}
		tr, err := trainer.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		before := map[string][]float64{}
		for n, v := range tr.Params.T {
			before[n] = host.ToFloat64(v)
		}
		var losses []float64
		for range 8 {
			st, err := tr.Step(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, st.Loss)
		}
		return losses, before, tr.Params
	}
	losses, before, params := run(dtypes.BFloat16)
	ref, _, _ := run(0)
	t.Logf("bf16 losses %.4f", losses)
	t.Logf("f32 losses  %.4f", ref)
	first, last := losses[0], (losses[len(losses)-1]+losses[len(losses)-2])/2
	if !(last < 0.95*first) || math.IsNaN(last) {
		t.Errorf("loss %.4f after 8 steps (mean of the last 2), %.4f at the first: it did not go down", last, first)
	}
	for i := range losses {
		if e := math.Abs(losses[i]-ref[i]) / ref[i]; e > 2e-2 {
			t.Errorf("step %d: bf16 loss %.5f, float32 compute %.5f: relative difference %.3g", i+1, losses[i], ref[i], e)
		}
	}
	for n, v := range params.T {
		if v.DType() != dtypes.Float32 {
			t.Errorf("%s: %s after training, want the float32 master dtype", n, v.DType())
		}
		trains := strings.Contains(n, ".lora_") || model.IsNorm(n)
		if moved := !slices.Equal(host.ToFloat64(v), before[n]); moved != trains {
			t.Errorf("%s: trains %v but changed %v", n, trains, moved)
		}
	}
}

// TestLoRAFrozenBase: a LoRA run from a bfloat16 model folder keeps the frozen
// base in bfloat16 (lora.base_dtype: stored): the weights take about half
// the bytes, and the losses, the trained weights and a checkpoint's resume are
// bitwise those of the same run holding the base in float32 (base_dtype:
// master), under float32 and bf16-mixed compute, host and device-resident,
// tied and untied, with Qwen2's biases. The checkpoint stores the base as held.
func TestLoRAFrozenBase(t *testing.T) {
	for _, tc := range []struct {
		name           string
		compute        dtypes.DType
		device, tied   bool
		bias           bool
		lora           model.LoRA
		wantHalfWeight bool // the embedding (and lm_head) frozen too
	}{
		{"float32 untied", 0, false, false, false, model.LoRA{Rank: 2, Alpha: 4, Targets: []string{"q", "v", "down"}}, true},
		{"bf16 mixed device tied biases", dtypes.BFloat16, true, true, true, model.LoRA{Rank: 2, Alpha: 4, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, TrainNorm: true}, true},
		{"float32 device trained embedding", 0, true, false, false, model.LoRA{Rank: 2, Alpha: 4, Targets: []string{"o"}, TrainEmbed: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parityConfig(t, dtypes.Float32, 64, 2)
			cfg.Model.TieEmbeddings, cfg.Model.QKVBias = tc.tied, tc.bias
			base, err := model.Init(cfg.Model, dtypes.Float32, 0.1, 7)
			if err != nil {
				t.Fatal(err)
			}
			if tc.bias { // nonzero biases, so that they matter
				for n, v := range base.T {
					if model.IsBias(n) {
						base.T[n] = host.FromFloat64(dtypes.Float32, slices.Repeat([]float64{0.05}, v.Size()), v.Shape().Dimensions...)
					}
				}
			}
			from := t.TempDir()
			if err := model.SaveHF(from, base, "bfloat16"); err != nil {
				t.Fatal(err)
			}
			cfg.From, cfg.Model = from, model.Config{}
			cfg.LoRA, cfg.Compute, cfg.DeviceResident = tc.lora, tc.compute, tc.device
			type out struct {
				losses  []float64
				weights int64
				params  map[string][]float64
				dtypes  map[string]dtypes.DType
				ckpt    string
			}
			run := func(stored bool, resume string, steps int) out {
				c := cfg
				c.KeepFrozenStored = stored
				tr, err := trainer.New(c, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				if resume != "" {
					if _, err := tr.Resume(resume); err != nil {
						t.Fatal(err)
					}
				}
				var o out
				for range steps {
					st, err := tr.Step(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					o.losses, o.weights = append(o.losses, st.Loss), st.Memory.Weights
				}
				o.params, o.dtypes = map[string][]float64{}, map[string]dtypes.DType{}
				for n, v := range tr.Params.T {
					o.params[n], o.dtypes[n] = host.ToFloat64(v), v.DType()
				}
				s, err := tr.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if o.ckpt, err = checkpoint.Save(t.TempDir(), s); err != nil {
					t.Fatal(err)
				}
				return o
			}
			master, stored := run(false, "", 4), run(true, "", 4)
			if !slices.Equal(stored.losses, master.losses) {
				t.Errorf("losses %.9g with the base in bfloat16, %.9g in float32", stored.losses, master.losses)
			}
			var half, halfBytes int64
			for n, want := range master.params {
				if !slices.Equal(stored.params[n], want) {
					t.Errorf("%s differs after 4 steps", n)
				}
				keep := tc.lora.KeepsStored(n) && !strings.Contains(n, ".lora_")
				if got := stored.dtypes[n]; (got == dtypes.BFloat16) != keep {
					t.Errorf("%s held as %s; kept in bfloat16: want %v", n, got, keep)
				}
				if keep {
					half++
					halfBytes += int64(2 * len(want))
				}
				if master.dtypes[n] != dtypes.Float32 {
					t.Errorf("%s held as %s under base_dtype master", n, master.dtypes[n])
				}
			}
			if got := master.weights - stored.weights; got != halfBytes {
				t.Errorf("weights %d bytes with the base in bfloat16, %d in float32: saved %d, want %d (%d tensors at 2 bytes less a scalar)",
					stored.weights, master.weights, got, halfBytes, half)
			}
			if ratio := float64(stored.weights) / float64(master.weights); tc.wantHalfWeight && ratio > 0.55 {
				t.Errorf("weights %d bytes, %.2f of float32's", stored.weights, ratio)
			}
			t.Logf("weights %d bytes (float32 base: %d, %.2fx)", stored.weights, master.weights, float64(stored.weights)/float64(master.weights))
			ck, err := checkpoint.Open(stored.ckpt)
			if err != nil {
				t.Fatal(err)
			}
			p, _, err := ck.LoadKeeping(dtypes.Float32, func(string) bool { return true })
			if err != nil {
				t.Fatal(err)
			}
			for n, v := range p.T {
				if want := stored.dtypes[n]; v.DType() != want && !strings.Contains(n, ".lora_") {
					t.Errorf("checkpoint stores %s as %s, the run held %s", n, v.DType(), want)
				}
			}
			// Resume from each checkpoint: 2 more steps continue bitwise.
			whole := run(false, "", 6)
			for _, o := range []out{master, stored} {
				more := run(o.dtypes[model.LayerParam(0, model.QProj)] == dtypes.BFloat16, o.ckpt, 2)
				if got := append(slices.Clone(o.losses), more.losses...); !slices.Equal(got, whole.losses) {
					t.Errorf("resumed losses %.9g, uninterrupted %.9g", got, whole.losses)
				}
			}
		})
	}
}
