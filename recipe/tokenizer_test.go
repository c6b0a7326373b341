package recipe_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/torusml/torus/recipe"
)

// TestTokenizerDefault: with model.from a folder holding a tokenizer.json and
// no data.tokenizer, the recipe takes the model's tokenizer (from_model, the
// folder as its spec); a recipe that says byte keeps bytes; a tokenizer.json
// path is taken as it is.
func TestTokenizerDefault(t *testing.T) {
	from := t.TempDir()
	if err := os.WriteFile(filepath.Join(from, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	bare := t.TempDir() // a model folder without a tokenizer
	for _, tc := range []struct {
		name, body       string
		wantKey, wantUse string
	}{
		{"the model's", "model: {from: " + from + "}\n", "from_model", from},
		{"bytes said", "model: {from: " + from + "}\ndata: {tokenizer: byte}\n", "byte", "byte"},
		{"no tokenizer there", "model: {from: " + bare + "}\n", "byte", "byte"},
		{"a file", "data: {tokenizer: " + filepath.Join(from, "tokenizer.json") + "}\n", filepath.Join(from, "tokenizer.json"), filepath.Join(from, "tokenizer.json")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := recipe.Parse("r.yaml", []byte(tc.body), []string{"data.sources.0.type=text_file", "data.sources.0.path=/corpus.txt"})
			if err != nil {
				t.Fatal(err)
			}
			if r.Data.Tokenizer != tc.wantKey || r.TokenizerSpec() != tc.wantUse {
				t.Errorf("data.tokenizer %q (spec %q), want %q (%q)", r.Data.Tokenizer, r.TokenizerSpec(), tc.wantKey, tc.wantUse)
			}
		})
	}
}
