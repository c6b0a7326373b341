package model_test

import (
	"encoding/json"
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

// scaledConfigs are one config of each rope_scaling type, with every key set so
// that config.json round-trips them exactly.
var scaledConfigs = map[string]model.Config{
	"linear":  withRope(model.RopeScaling{Type: "linear", Factor: 4}),
	"dynamic": withRope(model.RopeScaling{Type: "dynamic", Factor: 2.5}),
	"yarn": withMaxPositions(256, withRope(model.RopeScaling{Type: "yarn", Factor: 8, OriginalMaxPositions: 32,
		BetaFast: 16, BetaSlow: 2, AttentionFactor: 1.25})),
	"llama3": withRope(model.RopeScaling{Type: "llama3", Factor: 8, OriginalMaxPositions: 48,
		LowFreqFactor: 1, HighFreqFactor: 4}),
}

func withMaxPositions(n int, c model.Config) model.Config {
	c.MaxPositions = n
	return c
}

// withRope is conventionsConfig with head_dim 32 (16 frequencies) and s.
func withRope(s model.RopeScaling) model.Config {
	c := conventionsConfig
	c.HeadDim = 32
	c.RopeScaling = s
	return c
}

func TestHFRopeScalingRoundTrip(t *testing.T) {
	want := map[string]string{
		"linear":  `"rope_scaling": {` + "\n    \"factor\": 4.0,\n    \"rope_type\": \"linear\"\n  },",
		"dynamic": `"rope_scaling": {` + "\n    \"factor\": 2.5,\n    \"rope_type\": \"dynamic\"\n  },",
		"yarn": `"rope_scaling": {` + "\n    \"attention_factor\": 1.25,\n    \"beta_fast\": 16.0,\n    \"beta_slow\": 2.0,\n" +
			"    \"factor\": 8.0,\n    \"original_max_position_embeddings\": 32,\n    \"rope_type\": \"yarn\"\n  },",
		"llama3": `"rope_scaling": {` + "\n    \"factor\": 8.0,\n    \"high_freq_factor\": 4.0,\n    \"low_freq_factor\": 1.0,\n" +
			"    \"original_max_position_embeddings\": 48,\n    \"rope_type\": \"llama3\"\n  },",
	}
	for name, c := range scaledConfigs {
		t.Run(name, func(t *testing.T) {
			b, err := model.HFConfigJSON(c, "float32")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), want[name]) {
				t.Errorf("config.json:\n%s\nwant it to contain\n%s", b, want[name])
			}
			got, err := model.ReadHFConfig(writeFile(t, "config.json", b))
			if err != nil {
				t.Fatal(err)
			}
			// dynamic grows from max_position_embeddings; transformers releases
			// that derive yarn's factor take max_position_embeddings / original.
			var js struct {
				MaxPos      int `json:"max_position_embeddings"`
				RopeScaling struct {
					Factor   float64 `json:"factor"`
					Original int     `json:"original_max_position_embeddings"`
				} `json:"rope_scaling"`
			}
			if err := json.Unmarshal(b, &js); err != nil {
				t.Fatal(err)
			}
			if rs := js.RopeScaling; name == "yarn" && float64(js.MaxPos) != rs.Factor*float64(rs.Original) {
				t.Errorf("yarn: max_position_embeddings %d, want factor %v x original %d", js.MaxPos, rs.Factor, rs.Original)
			}
			if got != c {
				t.Errorf("read back %+v, want %+v", got, c)
			}
		})
	}
	// Checkpoints and torus export write config.json through ExportHF.
	p, err := model.Init(scaledConfigs["yarn"], dtypes.Float32, 0.1, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := model.ExportHF(dir, p, model.HFExport{DType: "bfloat16"}); err != nil {
		t.Fatal(err)
	}
	q, err := model.LoadHF(dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if q.Config != p.Config {
		t.Errorf("exported and loaded %+v, want %+v", q.Config, p.Config)
	}
}

// Keys left to their defaults are written resolved: the config read back differs
// in those fields but gives the same tables.
func TestHFRopeScalingDefaultsResolved(t *testing.T) {
	for _, s := range []model.RopeScaling{
		{Type: "yarn", Factor: 4},
		{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4},
		{Type: "dynamic", Factor: 2, OriginalMaxPositions: 40}, // written as max_position_embeddings 40
	} {
		c := withRope(s)
		b, err := model.HFConfigJSON(c, "float32")
		if err != nil {
			t.Fatal(err)
		}
		got, err := model.ReadHFConfig(writeFile(t, "config.json", b))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{10, 64, 200} {
			f1, a1 := model.RopeFrequencies(c, n)
			f2, a2 := model.RopeFrequencies(got, n)
			for j := range f1 {
				if f1[j] != f2[j] || a1 != a2 {
					t.Fatalf("%s at %d tokens: frequency %d %v (x%v) read back as %v (x%v)\n%s", s.Type, n, j, f1[j], a1, f2[j], a2, b)
				}
			}
		}
	}
}

func TestReadHFConfigRope(t *testing.T) {
	mscale := (0.1*math.Log(40) + 1) / (0.05*math.Log(40) + 1)
	for _, c := range []struct {
		extra string
		want  model.RopeScaling
		theta float64
	}{
		{`,"rope_scaling":{"type":"linear","factor":2}}`, model.RopeScaling{Type: "linear", Factor: 2}, 10000},
		{`,"rope_scaling":{"rope_type":"dynamic","factor":2.0,"original_max_position_embeddings":512}}`, // transformers reads max_position_embeddings
			model.RopeScaling{Type: "dynamic", Factor: 2}, 10000},
		{`,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,` +
			`"original_max_position_embeddings":8192},"rope_theta":500000.0}`,
			model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}, 500000},
		{`,"rope_parameters":{"rope_type":"yarn","factor":4.0,"rope_theta":1000000.0,"original_max_position_embeddings":1024}}`,
			model.RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPositions: 1024}, 1e6},
		{`,"max_position_embeddings":4096,"rope_scaling":{"rope_type":"yarn","original_max_position_embeddings":1024,"beta_fast":null}}`,
			model.RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPositions: 1024}, 10000},
		{`,"rope_scaling":{"rope_type":"yarn","factor":40,"mscale":1.0,"mscale_all_dim":0.5,"original_max_position_embeddings":4096}}`,
			model.RopeScaling{Type: "yarn", Factor: 40, OriginalMaxPositions: 4096, AttentionFactor: mscale}, 10000},
		{`,"rope_scaling":{"rope_type":"linear","factor":2},"rope_parameters":{"rope_type":"default","rope_theta":20000.0}}`,
			model.RopeScaling{Type: "linear", Factor: 2}, 20000},
		{`,"rope_scaling":{"rope_type":"default","factor":2}}`, model.RopeScaling{}, 10000},
	} {
		got, err := model.ReadHFConfig(writeFile(t, "config.json", []byte(minimalLlama+c.extra)))
		if err != nil {
			t.Errorf("%s: %v", c.extra, err)
			continue
		}
		if got.RopeScaling != c.want || got.RopeTheta != c.theta {
			t.Errorf("%s: rope_scaling %+v, rope_theta %v; want %+v, %v", c.extra, got.RopeScaling, got.RopeTheta, c.want, c.theta)
		}
	}
}

func TestReadHFConfigRopeErrors(t *testing.T) {
	for _, c := range []struct{ extra, want string }{
		{`,"rope_scaling":{"rope_type":"foo","factor":2.0}}`, `rope_scaling type "foo" not supported (linear, dynamic, yarn, llama3)`},
		{`,"rope_parameters":{"rope_type":"longrope","short_factor":[1.0]}}`, `rope_parameters type "longrope" not supported`},
		{`,"rope_scaling":{"type":"su"}}`, `rope_scaling type "su" not supported`},
		{`,"rope_scaling":{"rope_type":"linear","factor":0.5}}`, "rope_scaling factor must be >= 1"},
		{`,"rope_scaling":{"rope_type":"dynamic"}}`, "rope_scaling factor missing for type dynamic"},
		{`,"rope_scaling":{"rope_type":"llama3","factor":8.0,"original_max_position_embeddings":8192}}`, "low_freq_factor and high_freq_factor are required"},
		{`,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":4,"high_freq_factor":1}}`, "high_freq_factor must be > low_freq_factor"},
		{`,"rope_scaling":{"rope_type":"yarn","factor":4.0,"truncate":false}}`, "rope_scaling truncate false not supported"},
		{`,"rope_scaling":{"rope_type":"yarn","factor":4.0,"attention_factor":0}}`, "attention_factor must be > 0"},
		{`,"rope_scaling":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":10.5}}`, "original_max_position_embeddings must be a whole number"},
		{`,"rope_scaling":{"rope_type":"linear","factor":2.0,"partial_rotary_factor":0.5}}`, "partial_rotary_factor 0.5 not supported"},
		{`,"rope_scaling":{"rope_type":"linear","factor":2.0},"rope_parameters":{"rope_type":"linear","factor":4.0}}`, "disagree"},
		{`,"rope_scaling":{"rope_type":3}}`, "rope_scaling: json"},
	} {
		path := writeFile(t, "config.json", []byte(minimalLlama+c.extra))
		_, err := model.ReadHFConfig(path)
		if err == nil || !strings.HasPrefix(err.Error(), "model: "+path+": ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.extra, err, c.want)
		}
	}
}

// TestRopePython (TORUS_ROPE_CHECK=1) has testdata/hf_rope.py, a float64
// reimplementation of transformers' modeling_rope_utils formulas that reads
// config.json as transformers does, compute frequencies, attention factor, cos
// and sin from the config.json torus writes, and compares them with torus's.
// The interpreter is found as for TestHFCheckPython; it needs torch.
func TestRopePython(t *testing.T) {
	if os.Getenv("TORUS_ROPE_CHECK") != "1" {
		t.Skip("set TORUS_ROPE_CHECK=1 to check RoPE scaling against a Python reimplementation of transformers'")
	}
	python := hfCheckPython(t)
	type query struct {
		Config    string  `json:"config"`
		Positions []int32 `json:"positions"`
	}
	type answer struct {
		InvFreq   []float64   `json:"inv_freq"`
		Attention float64     `json:"attention"`
		Cos       [][]float64 `json:"cos"`
		Sin       [][]float64 `json:"sin"`
	}
	cases := map[string]model.Config{
		"plain":           withRope(model.RopeScaling{}),
		"yarn defaults":   withRope(model.RopeScaling{Type: "yarn", Factor: 16}),
		"yarn 4096":       withRope(model.RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPositions: 4096}),
		"llama3 defaults": withRope(model.RopeScaling{Type: "llama3", Factor: 3, LowFreqFactor: 0.5, HighFreqFactor: 2}),
	}
	for name, c := range scaledConfigs {
		cases[name] = c
	}
	theta := scaledConfigs["yarn"]
	theta.RopeTheta = 500000
	cases["yarn theta 500000"] = theta
	long := []int32{0, 1, 5, 63, 64, 100, 257, 999, 2047}
	var names []string
	var queries []query
	dir := t.TempDir()
	for name, c := range cases {
		b, err := model.HFConfigJSON(c, "float32")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name, name+" short")
		queries = append(queries, query{path, long}, query{path, []int32{3, 0, 40, 7}})
	}
	in, err := json.Marshal(queries)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "testdata/hf_rope.py")
	cmd.Stdin = strings.NewReader(string(in))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	var answers []answer
	if err := json.Unmarshal(out, &answers); err != nil || len(answers) != len(queries) {
		t.Fatalf("hf_rope.py: %d answers for %d queries (%v)\n%s", len(answers), len(queries), err, out)
	}
	for k, a := range answers {
		name, pos := names[k], queries[k].Positions
		c := cases[strings.TrimSuffix(name, " short")]
		// transformers takes the sequence length from the positions, as RopeTables.
		n := 0
		for _, p := range pos {
			n = max(n, int(p)+1)
		}
		f, att := model.RopeFrequencies(c, n)
		for j := range f {
			if math.Abs(f[j]-a.InvFreq[j]) > 1e-12*a.InvFreq[j] {
				t.Errorf("%s: frequency %d: %.17g, transformers' %.17g", name, j, f[j], a.InvFreq[j])
			}
		}
		if math.Abs(att-a.Attention) > 1e-12 {
			t.Errorf("%s: attention factor %.17g, transformers' %.17g", name, att, a.Attention)
		}
		cos, sin := model.RopeTables(c, dtypes.Float64, pos)
		cv, sv := host.ToFloat64(cos), host.ToFloat64(sin)
		hd := c.HeadDimension()
		for i, p := range pos {
			// An ulp of a frequency moves the angle by p ulps.
			tol := 1e-12 * max(1, float64(p)/100)
			for j := range hd {
				if math.Abs(cv[i*hd+j]-a.Cos[i][j]) > tol || math.Abs(sv[i*hd+j]-a.Sin[i][j]) > tol {
					t.Errorf("%s: position %d column %d: cos, sin %.17g, %.17g; transformers' %.17g, %.17g",
						name, p, j, cv[i*hd+j], sv[i*hd+j], a.Cos[i][j], a.Sin[i][j])
				}
			}
		}
	}
}
