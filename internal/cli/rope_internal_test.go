package cli

import (
	"testing"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/recipe"
)

// The recipe's model.rope_scaling reaches model.Config (from scratch, the
// original context defaulting to data.seq_len / factor) or replaces model.from's.
func TestTrainerConfigRopeScaling(t *testing.T) {
	r := recipe.Default()
	c, err := trainerConfig(r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.RopeScaling != (model.RopeScaling{}) || c.RopeScaling != nil {
		t.Errorf("type none: model %+v, override %v; want neither", c.Model.RopeScaling, c.RopeScaling)
	}

	r.Model.RopeScaling.Type, r.Model.RopeScaling.Factor = "yarn", 4
	r.Data.SeqLen = 1024
	if c, err = trainerConfig(r); err != nil {
		t.Fatal(err)
	}
	want := model.RopeScaling{Type: "yarn", Factor: 4, OriginalMaxPositions: 256, LowFreqFactor: 1, HighFreqFactor: 4, BetaFast: 32, BetaSlow: 1}
	if c.Model.RopeScaling != want || c.RopeScaling != nil {
		t.Errorf("from scratch: model %+v, override %v; want %+v and none", c.Model.RopeScaling, c.RopeScaling, want)
	}
	if err := c.Model.Validate(); err != nil {
		t.Error(err)
	}

	r.Model.From = "some/folder"
	r.Model.RopeScaling = recipe.RopeScalingConfig{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4}
	if c, err = trainerConfig(r); err != nil {
		t.Fatal(err)
	}
	want = model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4} // original: the folder's max_position_embeddings
	if c.RopeScaling == nil || *c.RopeScaling != want {
		t.Errorf("with from: override %v, want %+v", c.RopeScaling, want)
	}
}
