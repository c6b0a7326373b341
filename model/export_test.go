package model_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// exportCases are the dtypes an export is asked for, each with the rounding its
// values go through (round to nearest even, as the reference converters do).
var exportCases = []struct {
	dtype string
	size  int64
	round func(float32) float32
}{
	{"float32", 4, func(x float32) float32 { return x }},
	{"bfloat16", 2, func(x float32) float32 { return bfloat16.FromFloat32(x).Float32() }},
	{"float16", 2, func(x float32) float32 { return float16.FromFloat32(x).Float32() }},
}

// rounded copies float32 params with every value passed through round.
func rounded(p *model.Params, round func(float32) float32) *model.Params {
	q := &model.Params{Config: p.Config, DType: p.DType, T: map[string]*tensors.Tensor{}}
	for name, t := range p.T {
		var v []float32
		t.MustConstFlatData(func(flat any) { v = slices.Clone(flat.([]float32)) })
		for i := range v {
			v[i] = round(v[i])
		}
		q.T[name] = tensors.FromFlatDataAndDimensions(v, t.Shape().Dimensions...)
	}
	return q
}

// paramBytes is the size of p's tensors stored as elements of the given size.
func paramBytes(p *model.Params, elem int64) int64 {
	return int64(p.NumParams()) * elem
}

func TestExportHFRoundTrip(t *testing.T) {
	p := tinyParams(t, false, dtypes.Float32)
	for _, ec := range exportCases {
		total := paramBytes(p, ec.size)
		for _, sc := range []struct {
			name     string
			maxShard int64
			shards   int // 1: model.safetensors alone; >1: at least that many shards and an index
		}{{"one file", 0, 1}, {"one file at the limit", total, 1}, {"sharded", total / 4, 3}} {
			t.Run(ec.dtype+" "+sc.name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "hf")
				if err := model.ExportHF(dir, p, model.HFExport{DType: ec.dtype, MaxShardBytes: sc.maxShard}); err != nil {
					t.Fatal(err)
				}
				files := weightFiles(t, dir)
				switch {
				case sc.shards == 1 && !slices.Equal(files, []string{"model.safetensors"}):
					t.Errorf("weight files %v, want model.safetensors alone", files)
				case sc.shards > 1 && (len(files) < sc.shards+1 || !slices.Contains(files, "model.safetensors.index.json") ||
					slices.Contains(files, "model.safetensors")):
					t.Errorf("weight files %v, want %d or more shards and the index", files, sc.shards)
				}
				q, err := model.LoadHF(dir, dtypes.Float32)
				if err != nil {
					t.Fatal(err)
				}
				if q.Config != p.Config {
					t.Errorf("config %+v, exported %+v", q.Config, p.Config)
				}
				want := rounded(p, ec.round)
				for _, n := range p.Names() {
					if !bytes.Equal(rawBytes(q.T[n]), rawBytes(want.T[n])) || !q.T[n].Shape().Equal(want.T[n].Shape()) {
						t.Errorf("%s: read back %v, want %v rounded to %s", n, host.ToFloat64(q.T[n])[:3], host.ToFloat64(want.T[n])[:3], ec.dtype)
					}
				}
			})
		}
	}
}

// TestExportHFLogits runs the model forward on the exported and re-imported
// params and on the original params rounded in memory: the logits are identical.
func TestExportHFLogits(t *testing.T) {
	p := tinyParams(t, false, dtypes.Float32)
	pieces, err := model.NewPieces(testBackend(t), p.Config)
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int32{1, 7, 3, 3, 10, 0, 5, 2, 9}
	for _, ec := range exportCases {
		t.Run(ec.dtype, func(t *testing.T) {
			dir := t.TempDir()
			o := model.HFExport{DType: ec.dtype, MaxShardBytes: paramBytes(p, ec.size) / 3}
			if err := model.ExportHF(dir, p, o); err != nil {
				t.Fatal(err)
			}
			q, err := model.LoadHF(dir, dtypes.Float32)
			if err != nil {
				t.Fatal(err)
			}
			got := forwardLogits(t, pieces, q, tokens)
			want := forwardLogits(t, pieces, rounded(p, ec.round), tokens)
			if !bytes.Equal(rawBytes(got), rawBytes(want)) {
				t.Errorf("logits after the round trip differ: %v, want %v", host.ToFloat64(got)[:4], host.ToFloat64(want)[:4])
			}
			g := host.ToFloat64(got)
			if spread := slices.Max(g) - slices.Min(g); math.IsNaN(spread) || spread < 0.1 {
				t.Errorf("logits span only %g: the forward is not exercising the weights", spread)
			}
			if ec.dtype == "float32" && !bytes.Equal(rawBytes(got), rawBytes(forwardLogits(t, pieces, p, tokens))) {
				t.Error("float32 export changes the logits")
			}
		})
	}
}

// forwardLogits runs the model over tokens (one document) with the pieces:
// embedding, each layer's PreAttn, block attention and PostAttn, then Logits.
// Returns logits [L, V].
func forwardLogits(t testing.TB, pieces *model.Pieces, p *model.Params, tokens []int32) *tensors.Tensor {
	t.Helper()
	return forwardWith(t, pieces, p, tokens, func(l int) (model.LayerWeights, error) { return p.Layer(l), nil })
}

// forwardWith is forwardLogits with each layer's weights from layer.
func forwardWith(t testing.TB, pieces *model.Pieces, p *model.Params, tokens []int32, layer func(int) (model.LayerWeights, error)) *tensors.Tensor {
	t.Helper()
	tok := model.Tokens{Pos: make([]int32, len(tokens)), Doc: make([]int32, len(tokens))}
	for i := range tok.Pos {
		tok.Pos[i] = int32(i)
	}
	cos, sin := model.RopeTables(p.Config, p.DType, tok.Pos)
	ba := &model.BlockAttention{P: pieces, BlockQ: 4, BlockK: 4}
	h := host.GatherRows(p.Get("model.embed_tokens.weight"), tokens)
	for l := range p.Config.Layers {
		w, err := layer(l)
		if err != nil {
			t.Fatal(err)
		}
		q, k, v, err := pieces.PreAttn(w, h, cos, sin)
		if err != nil {
			t.Fatal(err)
		}
		o, _, err := ba.Forward(context.Background(), q, k, v, tok)
		if err != nil {
			t.Fatal(err)
		}
		if h, err = pieces.PostAttn(w, h, o); err != nil {
			t.Fatal(err)
		}
	}
	logits, err := pieces.Logits(p.Get("model.norm.weight"), p.OutputWeight(), h)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// weightFiles lists the files of dir other than the two config files, sorted.
func weightFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != "config.json" && e.Name() != "generation_config.json" {
			out = append(out, e.Name())
		}
	}
	return out
}

// conventionsConfig is small, with grouped-query attention (k_proj and v_proj
// narrower than q_proj) and every dimension distinct where the layout matters.
var conventionsConfig = model.Config{Vocab: 32, Dim: 16, Layers: 2, Heads: 4, KVHeads: 2, MLPDim: 24,
	RopeTheta: 10000, NormEps: 1e-5, MaxPositions: 64}

// llamaStateDict is LlamaForCausalLM(conventionsConfig).state_dict(): names, in
// order, and shapes (nn.Linear weights are [out_features, in_features]).
func llamaStateDict(tied bool) []stTensor {
	sd := []stTensor{{"model.embed_tokens.weight", []int{32, 16}}}
	for l := range 2 {
		for _, e := range []stTensor{
			{"self_attn.q_proj.weight", []int{16, 16}}, // heads*head_dim = 4*4
			{"self_attn.k_proj.weight", []int{8, 16}},  // kv_heads*head_dim = 2*4
			{"self_attn.v_proj.weight", []int{8, 16}},
			{"self_attn.o_proj.weight", []int{16, 16}},
			{"mlp.gate_proj.weight", []int{24, 16}},
			{"mlp.up_proj.weight", []int{24, 16}},
			{"mlp.down_proj.weight", []int{16, 24}},
			{"input_layernorm.weight", []int{16}},
			{"post_attention_layernorm.weight", []int{16}},
		} {
			sd = append(sd, stTensor{fmt.Sprintf("model.layers.%d.%s", l, e.name), e.shape})
		}
	}
	sd = append(sd, stTensor{"model.norm.weight", []int{16}})
	if !tied {
		sd = append(sd, stTensor{"lm_head.weight", []int{32, 16}})
	}
	return sd
}

type stTensor struct {
	name  string
	shape []int
}

// config.json as transformers writes it for LlamaConfig(vocab_size=32, hidden_size=16,
// intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
// num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
// bos_token_id=None, eos_token_id=None) of LlamaForCausalLM, saved as bfloat16.
const goldenConfigJSON = `{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": null,
  "eos_token_id": null,
  "head_dim": 4,
  "hidden_act": "silu",
  "hidden_size": 16,
  "initializer_range": 0.02,
  "intermediate_size": 24,
  "max_position_embeddings": 64,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.46.0",
  "use_cache": true,
  "vocab_size": 32
}
`

func TestExportHFConventions(t *testing.T) {
	for _, c := range []struct {
		name     string
		tied     bool
		dtype    string
		stDType  string
		size     int64
		maxShard int64
	}{
		{"float32", false, "float32", "F32", 4, 0},
		{"bfloat16 tied", true, "bfloat16", "BF16", 2, 0},
		{"float16 sharded", false, "float16", "F16", 2, 3000},
		{"bfloat16 sharded tied", true, "bfloat16", "BF16", 2, 2500},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := conventionsConfig
			cfg.TieEmbeddings = c.tied
			p, err := model.Init(cfg, dtypes.Float32, 0.02, 3)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := model.ExportHF(dir, p, model.HFExport{DType: c.dtype, MaxShardBytes: c.maxShard}); err != nil {
				t.Fatal(err)
			}
			golden := llamaStateDict(c.tied)
			var stored []stTensor // in file order, files in shard order
			var files []string
			if c.maxShard == 0 {
				files = []string{"model.safetensors"}
			} else {
				files = checkIndex(t, dir, golden, c.size, c.maxShard)
			}
			for _, f := range files {
				stored = append(stored, checkHeader(t, filepath.Join(dir, f), c.stDType)...)
			}
			if len(stored) != len(golden) {
				t.Fatalf("%d tensors stored, LlamaForCausalLM has %d", len(stored), len(golden))
			}
			for i, g := range golden {
				if stored[i].name != g.name || !slices.Equal(stored[i].shape, g.shape) {
					t.Errorf("tensor %d is %s %v, LlamaForCausalLM's state_dict has %s %v", i, stored[i].name, stored[i].shape, g.name, g.shape)
				}
			}

			want := strings.Replace(goldenConfigJSON, `"bfloat16"`, fmt.Sprintf("%q", c.dtype), 1)
			want = strings.Replace(want, `"tie_word_embeddings": false`, fmt.Sprintf(`"tie_word_embeddings": %v`, c.tied), 1)
			if got := readFile(t, filepath.Join(dir, "config.json")); got != want {
				t.Errorf("config.json:\n%s\nwant:\n%s", got, want)
			}
			wantGen := "{\n  \"_from_model_config\": true,\n  \"transformers_version\": \"4.46.0\"\n}\n"
			if got := readFile(t, filepath.Join(dir, "generation_config.json")); got != wantGen {
				t.Errorf("generation_config.json:\n%s\nwant:\n%s", got, wantGen)
			}
		})
	}
}

// checkHeader parses a safetensors header as raw JSON: every tensor of the given
// dtype string, {"format": "pt"} metadata, data in header order tiling the file.
// Returns the tensors in data order.
func checkHeader(t *testing.T, path, stDType string) []stTensor {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	hdr := raw[8 : 8+n]
	if (8+n)%8 != 0 {
		t.Errorf("%s: data starts at %d, not 8-byte aligned", path, 8+n)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &m); err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	var meta map[string]string
	if err := json.Unmarshal(m["__metadata__"], &meta); err != nil || len(meta) != 1 || meta["format"] != "pt" {
		t.Errorf(`%s: __metadata__ %s, want {"format":"pt"}`, path, m["__metadata__"])
	}
	delete(m, "__metadata__")
	type info struct {
		DType       string  `json:"dtype"`
		Shape       []int   `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	type entry struct {
		stTensor
		begin, end int64
	}
	var entries []entry
	for name, r := range m {
		var in info
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || len(in.DataOffsets) != 2 {
			t.Fatalf("%s: %s: %s: %v", path, name, r, err)
		}
		if in.DType != stDType {
			t.Errorf("%s: %s has dtype %q, want %q", path, name, in.DType, stDType)
		}
		count := int64(1)
		for _, d := range in.Shape {
			count *= int64(d)
		}
		if elem := int64(map[string]int{"F32": 4, "F16": 2, "BF16": 2}[stDType]); in.DataOffsets[1]-in.DataOffsets[0] != count*elem {
			t.Errorf("%s: %s: data_offsets %v for %v of %s", path, name, in.DataOffsets, in.Shape, stDType)
		}
		entries = append(entries, entry{stTensor{name, in.Shape}, in.DataOffsets[0], in.DataOffsets[1]})
	}
	slices.SortFunc(entries, func(a, b entry) int { return int(a.begin - b.begin) })
	at := int64(0)
	var out []stTensor
	for _, e := range entries {
		if e.begin != at {
			t.Errorf("%s: %s starts at %d, the tensor before it ends at %d", path, e.name, e.begin, at)
		}
		at = e.end
		out = append(out, e.stTensor)
	}
	if data := int64(len(raw)) - 8 - int64(n); at != data {
		t.Errorf("%s: tensors end at %d, the data section is %d bytes", path, at, data)
	}
	return out
}

// checkIndex checks model.safetensors.index.json against transformers' format and
// the greedy split; returns the shard files in order.
func checkIndex(t *testing.T, dir string, golden []stTensor, elem, limit int64) []string {
	t.Helper()
	raw := readFile(t, filepath.Join(dir, "model.safetensors.index.json"))
	var index struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&index); err != nil {
		t.Fatalf("index: %v", err)
	}
	// json.dumps(index, indent=2, sort_keys=True) + "\n", as save_pretrained writes it.
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	var indented bytes.Buffer
	json.Indent(&indented, compact.Bytes(), "", "  ")
	if raw != indented.String()+"\n" || !strings.HasPrefix(raw, "{\n  \"metadata\": {\n    \"total_parameters\"") {
		t.Errorf("index is not formatted as transformers writes it:\n%s", raw)
	}
	sizes := map[string]int64{}
	var total, params int64
	for _, g := range golden {
		n := int64(1)
		for _, d := range g.shape {
			n *= int64(d)
		}
		sizes[g.name] = n * elem
		total += n * elem
		params += n
	}
	if index.Metadata["total_size"] != total || index.Metadata["total_parameters"] != params || len(index.Metadata) != 2 {
		t.Errorf("index metadata %v, want total_size %d (tensor bytes), total_parameters %d", index.Metadata, total, params)
	}
	if len(index.WeightMap) != len(golden) {
		t.Errorf("weight_map has %d tensors, want %d", len(index.WeightMap), len(golden))
	}
	// Shards hold runs of the state dict in order, each filled until the next tensor would not fit.
	var files []string
	shardBytes := map[string]int64{}
	for _, g := range golden {
		f := index.WeightMap[g.name]
		if len(files) == 0 || files[len(files)-1] != f {
			files = append(files, f)
		}
		shardBytes[f] += sizes[g.name]
	}
	if len(files) < 3 {
		t.Errorf("%d shards, the test wants 3 or more", len(files))
	}
	name := regexp.MustCompile(`^model-(\d{5})-of-(\d{5})\.safetensors$`)
	for i, f := range files {
		if want := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(files)); f != want || !name.MatchString(f) {
			t.Errorf("shard %d is %q, want %q (and each shard one run of the state dict)", i, f, want)
		}
		if shardBytes[f] > limit {
			t.Errorf("%s holds %d bytes, over the %d limit", f, shardBytes[f], limit)
		}
	}
	for i, g := range golden[1:] {
		prev := golden[i]
		if f := index.WeightMap[g.name]; f != index.WeightMap[prev.name] && shardBytes[index.WeightMap[prev.name]]+sizes[g.name] <= limit {
			t.Errorf("%s starts %s although it fits in %s", g.name, f, index.WeightMap[prev.name])
		}
	}
	return files
}

func TestExportHFTokenIDs(t *testing.T) {
	bos, eos := 1, 2
	dir := t.TempDir()
	if err := model.ExportHF(dir, tinyParams(t, true, dtypes.Float32), model.HFExport{BOSTokenID: &bos, EOSTokenID: &eos}); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"transformers_version\": \"4.46.0\"\n}\n"
	if got := readFile(t, filepath.Join(dir, "generation_config.json")); got != want {
		t.Errorf("generation_config.json:\n%s\nwant:\n%s", got, want)
	}
	cfg := readFile(t, filepath.Join(dir, "config.json"))
	for _, s := range []string{`"bos_token_id": 1,`, `"eos_token_id": 2,`, `"torch_dtype": "float32"`} {
		if !strings.Contains(cfg, s) {
			t.Errorf("config.json lacks %s:\n%s", s, cfg)
		}
	}
}

func TestExportHFFolder(t *testing.T) {
	p := tinyParams(t, false, dtypes.Float32)
	total := paramBytes(p, 4)
	export := func(dir string, maxShard int64) error {
		return model.ExportHF(dir, p, model.HFExport{MaxShardBytes: maxShard})
	}

	t.Run("creates missing parents", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		if err := export(dir, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := model.LoadHF(dir, dtypes.Float32); err != nil {
			t.Error(err)
		}
	})
	t.Run("refuses a folder of something else", func(t *testing.T) {
		dir := t.TempDir()
		notes := filepath.Join(dir, "notes.txt")
		if err := os.WriteFile(notes, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := export(dir, 0)
		if err == nil || !strings.Contains(err.Error(), "is not empty and holds no Hugging Face model") {
			t.Errorf("export into a folder of notes: %v", err)
		}
		if files := weightFiles(t, dir); !slices.Equal(files, []string{"notes.txt"}) {
			t.Errorf("the refused folder now holds %v", files)
		}
		file := filepath.Join(dir, "notes.txt")
		if err := export(file, 0); err == nil {
			t.Error("export onto a file: no error")
		}
	})
	t.Run("replaces an earlier export", func(t *testing.T) {
		dir := t.TempDir()
		if err := export(dir, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			maxShard int64
			sharded  bool
		}{{total / 4, true}, {0, false}, {total / 3, true}, {total / 5, true}} {
			if err := export(dir, step.maxShard); err != nil {
				t.Fatal(err)
			}
			files := weightFiles(t, dir)
			hasIndex := slices.Contains(files, "model.safetensors.index.json")
			if hasIndex != step.sharded || slices.Contains(files, "model.safetensors") == step.sharded || !slices.Contains(files, "tokenizer.json") {
				t.Errorf("after an export with %d-byte shards: %v", step.maxShard, files)
			}
			if step.sharded { // every shard is one the index names
				var index struct {
					WeightMap map[string]string `json:"weight_map"`
				}
				json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "model.safetensors.index.json"))), &index)
				named := map[string]bool{"model.safetensors.index.json": true, "tokenizer.json": true}
				for _, f := range index.WeightMap {
					named[f] = true
				}
				if len(named) != len(files) {
					t.Errorf("stale shards left: %v, index names %v", files, named)
				}
			}
			if _, err := model.LoadHF(dir, dtypes.Float32); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("invalid options change nothing", func(t *testing.T) {
		dir := t.TempDir()
		if err := export(dir, 0); err != nil {
			t.Fatal(err)
		}
		for _, o := range []model.HFExport{{DType: "int8"}, {MaxShardBytes: -1}} {
			if err := model.ExportHF(dir, p, o); err == nil {
				t.Errorf("%+v: no error", o)
			}
		}
		broken := &model.Params{Config: p.Config, DType: p.DType, T: map[string]*tensors.Tensor{}}
		if err := model.ExportHF(dir, broken, model.HFExport{}); err == nil || !strings.Contains(err.Error(), "params have no tensor") {
			t.Errorf("params without tensors: %v", err)
		}
		if _, err := model.LoadHF(dir, dtypes.Float32); err != nil {
			t.Errorf("the earlier export no longer loads: %v", err)
		}
	})
	t.Run("a failed export is not loadable", func(t *testing.T) {
		dir := t.TempDir()
		if err := export(dir, 0); err != nil {
			t.Fatal(err)
		}
		// A directory where the second shard's temporary file goes makes that write fail.
		names := t.TempDir()
		if err := export(names, total/4); err != nil {
			t.Fatal(err)
		}
		second := weightFiles(t, names)[1]
		if !strings.HasPrefix(second, "model-00002-of-") {
			t.Fatalf("test setup: the second weight file is %s", second)
		}
		if err := os.Mkdir(filepath.Join(dir, second+".tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := export(dir, total/4); err == nil {
			t.Fatal("export did not fail")
		}
		if _, err := model.LoadHF(dir, dtypes.Float32); err == nil || !strings.Contains(err.Error(), "config.json") {
			t.Errorf("LoadHF of the half-written folder: %v, want no config.json", err)
		}
	})
}

func TestExportHFErrors(t *testing.T) {
	p := tinyParams(t, false, dtypes.Float32)
	bad := *p
	bad.Config.KVHeads = 3
	dir := filepath.Join(t.TempDir(), "hf")
	for _, c := range []struct {
		p    *model.Params
		o    model.HFExport
		want string
	}{
		{p, model.HFExport{DType: "int8"}, `dtype "int8" not supported`},
		{p, model.HFExport{MaxShardBytes: -1}, "max shard bytes must be >= 0"},
		{&bad, model.HFExport{}, "kv_heads (3) must divide heads (4)"},
	} {
		err := model.ExportHF(dir, c.p, c.o)
		if err == nil || !strings.HasPrefix(err.Error(), "model: export "+dir+": ") || strings.Count(err.Error(), "model: ") != 1 ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about %s", c.o, err, c.want)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a refused export created its folder")
	}
}
