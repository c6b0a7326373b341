package recipe_test

import (
	"reflect"
	"testing"

	"github.com/torusml/torus/recipe"
)

// TestDecodeErrors checks errors found while reading the YAML: each names
// the file line and the key.
func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"unknown top-level key", base + "modle:\n  dim: 8\n",
			`recipe.yaml:5: unknown key "modle" (did you mean "model"?)`},
		{"unknown nested key", base + "optim:\n  beta1: 0.9\n  lrr: 1e-3\n",
			`recipe.yaml:7: optim: unknown key "lrr" (did you mean "lr"?)`},
		{"unknown key in a list element", "data:\n  sources:\n    - type: jsonl\n      path: /x\n      feild: body\n",
			`recipe.yaml:5: data.sources.0: unknown key "feild" (did you mean "field"?)`},
		{"key in the wrong section", base + "optim:\n  steps: 10\n",
			`recipe.yaml:6: optim: unknown key "steps" (did you mean "schedule.steps"?)`},
		{"unknown key, no suggestion", base + "zzzq: {rank: 8}\n", `recipe.yaml:5: unknown key "zzzq"`},
		{"string for an int", base + "model:\n  layers: two\n",
			`recipe.yaml:6: model.layers: must be an integer, got string "two"`},
		{"fraction for an int", "data: {seq_len: 1.5}\n",
			`recipe.yaml:1: data.seq_len: must be an integer, got number 1.5`},
		{"quoted number for a float", base + "optim: {lr: \"3e-4\"}\n",
			`recipe.yaml:5: optim.lr: must be a number, got string "3e-4"`},
		{"string for a bool", "seed: 3\ndata:\n  shuffle: yes\n",
			`recipe.yaml:3: data.shuffle: must be true or false, got string "yes"`},
		{"list for a string", base + "name: [a, b]\n", `recipe.yaml:5: name: must be a string, got a list`},
		{"scalar for a section", base + "optim: fast\n", `recipe.yaml:5: optim: must be a mapping, got string "fast"`},
		{"mapping for a list", "data:\n  sources: {type: jsonl}\n",
			`recipe.yaml:2: data.sources: must be a list, got a mapping`},
		{"no value for a string", base + "backend:\n", `recipe.yaml:5: backend: has no value (write "" for the empty string)`},
		{"int out of range", base + "model: {dim: 1e30}\n", `recipe.yaml:5: model.dim: must be an integer, got number 1e30`},
		{"duplicate key", base + "seed: 1\nseed: 2\n", `recipe.yaml:6: key "seed" appears twice (first on line 5)`},
		{"top level not a mapping", "- a\n- b\n", `recipe.yaml:1: must be a mapping, got a list`},
		{"malformed YAML", base + "optim:\n  lr: 1\n   beta1: 0.9\n", `recipe.yaml:7: malformed YAML: mapping values are not allowed in this context`},
		{"malformed YAML, list in a mapping", base + "seed: 1\n- x\n", `recipe.yaml:6: malformed YAML: did not find expected key`},
		{"unclosed flow list", base + "name: x\nmodel: {dim: 8\n", `recipe.yaml:6: malformed YAML: did not find expected ',' or '}'`},
		{"tab indentation", base + "model:\n\tdim: 8\n", `recipe.yaml:6: malformed YAML: found character that cannot start any token`},
		{"two documents", base + "---\nseed: 2\n", `recipe.yaml:5: a recipe is one YAML document; found another`},
		{"every problem", base + "modle: {}\nseed: x\nlog: {every: []}\n", `recipe.yaml:5: unknown key "modle" (did you mean "model"?)
recipe.yaml:6: seed: must be an integer, got string "x"
recipe.yaml:7: log.every: must be an integer, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := recipe.Parse("recipe.yaml", []byte(tt.src), nil)
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("Parse error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestEmptyFile(t *testing.T) {
	for _, src := range []string{"", "\n", "# nothing yet\n", "~\n"} {
		_, err := recipe.Parse("empty.yaml", []byte(src), nil)
		want := "(default): data.sources: at least one source is needed, e.g. [{type: text_dir, path: ./corpus}]"
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q) = %v, want %q", src, err, want)
		}
		r, err := recipe.Parse("empty.yaml", []byte(src),
			[]string{"data.sources.0.type=text_dir", "data.sources.0.path=/corpus"})
		if err != nil {
			t.Fatalf("Parse(%q) with sources set: %v", src, err)
		}
		if !sameValues(r, withSource()) {
			t.Errorf("Parse(%q) with sources set = %+v, want defaults", src, r)
		}
	}
}

func TestSet(t *testing.T) {
	src := base + "optim:\n  lr: 1e-3\n"
	tests := []struct {
		name  string
		sets  []string
		check func(recipe.Recipe) bool
	}{
		{"overrides a file value", []string{"optim.lr=3e-4"}, func(r recipe.Recipe) bool { return r.Optim.LR == 3e-4 }},
		{"the last set wins", []string{"optim.lr=1", "optim.lr=0.5"}, func(r recipe.Recipe) bool { return r.Optim.LR == 0.5 }},
		{"a default", []string{"model.layers=2", "data.shuffle=false", "name=smoke"}, func(r recipe.Recipe) bool {
			return r.Model.Layers == 2 && !r.Data.Shuffle && r.Name == "smoke"
		}},
		{"a list element's field", []string{"data.sources.0.path=/x"}, func(r recipe.Recipe) bool {
			return len(r.Data.Sources) == 1 && r.Data.Sources[0].Path == "/x"
		}},
		{"a new list element", []string{"data.sources.1.type=jsonl", "data.sources.1.path=/y.jsonl"}, func(r recipe.Recipe) bool {
			return len(r.Data.Sources) == 2 && reflect.DeepEqual(r.Data.Sources[1], recipe.SourceConfig{Type: "jsonl", Path: "/y.jsonl", Field: "text"})
		}},
		{"a whole element as YAML", []string{"data.sources.1={type: text_file, path: /z}"}, func(r recipe.Recipe) bool {
			return len(r.Data.Sources) == 2 && reflect.DeepEqual(r.Data.Sources[1], recipe.SourceConfig{Type: "text_file", Path: "/z"})
		}},
		{"a list of strings", []string{"data.sources.0.include=[a*, b*]"}, func(r recipe.Recipe) bool {
			return reflect.DeepEqual(r.Data.Sources[0].Include, []string{"a*", "b*"})
		}},
		{"a string that looks like a number", []string{"name=2024"}, func(r recipe.Recipe) bool { return r.Name == "2024" }},
		{"a value with =", []string{"data.sources.0.path=/a=b"}, func(r recipe.Recipe) bool {
			return r.Data.Sources[0].Path == "/a=b"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := recipe.Parse("recipe.yaml", []byte(src), tt.sets)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(r) {
				t.Errorf("after %q: %+v", tt.sets, r)
			}
		})
	}
}

func TestSetOriginInErrors(t *testing.T) {
	// The file's lr was fine; the --set that replaced it is what is wrong.
	_, err := recipe.Parse("recipe.yaml", []byte(base+"optim:\n  lr: 1e-3\n"), []string{"optim.lr=-0.1"})
	if want := "--set optim.lr=-0.1: must be > 0, got -0.1"; err == nil || err.Error() != want {
		t.Fatalf("Parse error = %v, want %q", err, want)
	}
}

func TestSetErrors(t *testing.T) {
	tests := []struct {
		name string
		set  string
		want string
	}{
		{"no =", "optim.lr", `--set optim.lr: want key=value, e.g. optim.lr=3e-4`},
		{"unknown key", "optim.lrr=1", `--set optim.lrr=1: unknown key "optim.lrr" (did you mean "optim.lr"?)`},
		{"unknown section", "optimizer.lr=1", `--set optimizer.lr=1: unknown key "optimizer" (did you mean "optim"?)`},
		{"key in the wrong section", "lr=1", `--set lr=1: unknown key "lr" (did you mean "optim.lr"?)`},
		{"key under a scalar", "optim.lr.x=1", `--set optim.lr.x=1: optim.lr is a number, it has no key "x"`},
		{"wrong type", "optim.lr=x", `--set optim.lr=x: must be a number, got string "x"`},
		{"wrong type in a list element", "data.sources.0.include=3",
			`--set data.sources.0.include=3: must be a list, got integer 3`},
		{"list element past the end", "data.sources.2.path=/x",
			`--set data.sources.2.path=/x: data.sources has 1 elements: a --set may add element 1, not 2`},
		{"list element not a number", "data.sources.first.path=/x",
			`--set data.sources.first.path=/x: data.sources is a list: "first" is not an element number`},
		{"unknown key in a list element", "data.sources.0.paht=/x",
			`--set data.sources.0.paht=/x: unknown key "data.sources.0.paht" (did you mean "data.sources.0.path"?)`},
		{"unknown key inside the value", "data.sources.0={type: jsonl, paht: /x}",
			`--set data.sources.0={type: jsonl, paht: /x}: unknown key "paht" (did you mean "path"?)`},
		{"malformed value", "model.layers=[1", `--set model.layers=[1: bad value: line 1: did not find expected ',' or ']'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := recipe.Parse("recipe.yaml", []byte(base), []string{tt.set})
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("Parse error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}
